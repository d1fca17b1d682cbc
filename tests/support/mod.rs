//! The shared harness of the integration tests: real components (Nginx, PostgreSQL, systemd in a namespace,
//! a Python venv with Django, gunicorn), the demo shop's versions, and a load generator that counts every
//! failed request.
//!
//! Every `tests/*.rs` that needs it says `mod support;`. Each component is a guard: dropping it (also during a
//! panic's unwind) stops what it started. Not every test binary uses every part, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod env;
pub mod gunicorn;
pub mod load;
pub mod nginx;
pub mod postgres;
pub mod proc;
pub mod scenarios;
pub mod shop;
pub mod systemd;
pub mod venv;
pub mod zdd;
