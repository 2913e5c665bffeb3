package wiring

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrSchema means the identity schema Kratos serves gives the canary no way
// to log in with a password or to be recovered by mail.
var ErrSchema = errors.New("identity schema")

// canaryTraits builds traits for the canary from an identity schema: every
// trait the schema marks as a password identifier or as a recovery address
// by email gets address, every other required trait the plainest value its
// type allows. It fails when the schema marks no password identifier or no
// recovery address, since the stages need both.
func canaryTraits(schema json.RawMessage, address string) (map[string]any, error) {
	var root schemaNode
	if err := json.Unmarshal(schema, &root); err != nil {
		return nil, fmt.Errorf("%w: not a JSON schema: %v", ErrSchema, err)
	}
	traits, ok := root.Properties["traits"]
	if !ok || traits.Type != "object" && len(traits.Properties) == 0 {
		return nil, fmt.Errorf("%w: no properties.traits object", ErrSchema)
	}
	var marks marks
	value := traits.fill(address, &marks)
	obj, _ := value.(map[string]any)
	switch {
	case !marks.identifier:
		return nil, fmt.Errorf("%w: no trait is marked \"ory.sh/kratos\": {\"credentials\": {\"password\": {\"identifier\": true}}}, so nobody can log in with a password", ErrSchema)
	case !marks.recovery:
		return nil, fmt.Errorf("%w: no trait is marked \"ory.sh/kratos\": {\"recovery\": {\"via\": \"email\"}}, so Kratos mails no recovery message", ErrSchema)
	}
	return obj, nil
}

type marks struct{ identifier, recovery bool }

// schemaNode is the part of JSON Schema the canary needs.
type schemaNode struct {
	Type       any                   `json:"type"`
	Properties map[string]schemaNode `json:"properties"`
	Required   []string              `json:"required"`
	Format     string                `json:"format"`
	Enum       []any                 `json:"enum"`
	MinLength  int                   `json:"minLength"`
	Minimum    *float64              `json:"minimum"`
	Kratos     struct {
		Credentials struct {
			Password struct {
				Identifier bool `json:"identifier"`
			} `json:"password"`
		} `json:"credentials"`
		Recovery struct {
			Via string `json:"via"`
		} `json:"recovery"`
	} `json:"ory.sh/kratos"`
}

func (n schemaNode) typeName() string {
	switch t := n.Type.(type) {
	case string:
		return t
	case []any:
		// ["string", "null"]: the first non-null type.
		for _, v := range t {
			if s, ok := v.(string); ok && s != "null" {
				return s
			}
		}
	}
	if len(n.Properties) > 0 {
		return "object"
	}
	return ""
}

// fill returns the canary's value for this node, or nil when the node may
// be left out.
func (n schemaNode) fill(address string, m *marks) any {
	marked := n.Kratos.Credentials.Password.Identifier || n.Kratos.Recovery.Via == "email"
	if n.Kratos.Credentials.Password.Identifier {
		m.identifier = true
	}
	if n.Kratos.Recovery.Via == "email" {
		m.recovery = true
	}
	switch n.typeName() {
	case "object":
		out := map[string]any{}
		names := make([]string, 0, len(n.Properties))
		for name := range n.Properties {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			child := n.Properties[name]
			v := child.fill(address, m)
			if v != nil && (slices.Contains(n.Required, name) || child.isMarked()) {
				out[name] = v
			}
		}
		return out
	case "string":
		switch {
		case marked || n.Format == "email":
			return address
		case len(n.Enum) > 0:
			return n.Enum[0]
		default:
			return "canary" + strings.Repeat("x", max(0, n.MinLength-len("canary")))
		}
	case "boolean":
		return false
	case "integer", "number":
		if n.Minimum != nil {
			return *n.Minimum
		}
		return 0
	case "array":
		return []any{}
	}
	if len(n.Enum) > 0 {
		return n.Enum[0]
	}
	return nil
}

// isMarked reports whether the node or one below it is a trait the canary
// must set.
func (n schemaNode) isMarked() bool {
	if n.Kratos.Credentials.Password.Identifier || n.Kratos.Recovery.Via == "email" {
		return true
	}
	for _, c := range n.Properties {
		if c.isMarked() {
			return true
		}
	}
	return false
}
