//! The shared harness of the integration tests: real components (Nginx, PostgreSQL, systemd in a namespace, SSH
//! hosts in network namespaces, a Python venv with Django, gunicorn), the demo shop's versions, and a load
//! generator that counts every failed request.
//!
//! Both test binaries (`tests/fast/main.rs`, `tests/scenarios/main.rs`) declare it once; their modules say
//! `use crate::support;`. Each component is a guard: dropping it (also during a panic's unwind) stops what it
//! started. Not every binary uses every part, hence the `dead_code` allowance.
#![allow(dead_code)]

pub(crate) mod caddy;
pub(crate) mod canary;
pub(crate) mod docker;
pub(crate) mod env;
pub(crate) mod env_snapshot;
pub(crate) mod gunicorn;
pub(crate) mod hosts;
pub(crate) mod load;
pub(crate) mod nginx;
pub(crate) mod postgres;
pub(crate) mod proc;
pub(crate) mod projects;
pub(crate) mod redis;
pub(crate) mod scenarios;
pub(crate) mod shop;
pub(crate) mod systemd;
pub(crate) mod tls;
pub(crate) mod tree;
pub(crate) mod two_phase;
pub(crate) mod venv;
pub(crate) mod wagtail;
pub(crate) mod websocket;
pub(crate) mod zdd;
