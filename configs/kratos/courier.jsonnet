// Kratos's courier sends the gateway its whole message context: recipient,
// subject, body, template_type, message_type and template_data (with the
// identity). The gateway reads what it needs and ignores the rest.
function(ctx) ctx
