//! Handlebars rendering of unit and Nginx templates: strict mode, no HTML escaping.
