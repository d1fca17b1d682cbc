//! Variables: defaults from the plan, `ZDD_VAR_<NAME>` from the environment, `--var NAME=VALUE` (wins),
//! runtime values from the engine, and handlebars interpolation into step fields (strict: an undefined name is an error).
