module github.com/kratos-email-gateway/kratos-email-gateway/integration

go 1.26

replace github.com/kratos-email-gateway/kratos-email-gateway => ../

require gopkg.in/yaml.v3 v3.0.1
