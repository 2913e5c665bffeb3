// Body of the gateway's login and settings web hooks: Kratos's identity with
// its metadata_public, which the gateway reads (and, for settings, returns
// without the change-required flag).
function(ctx) { identity: ctx.identity }
