//! zdd's step kinds, one module per kind. Each declares its fields ([`zdd_engine::schema::KindSpec`]),
//! what it previews, what it does through the host, and how it is undone.

use std::sync::Arc;

use zdd_engine::kind::Kinds;

pub mod collectstatic;
mod common;
pub mod django;
pub mod drain_stop;
pub mod envfile;
pub mod exec;
pub mod health_gate;
pub mod http;
pub mod log_check;
pub mod manage;
pub mod migrate;
pub mod origin;
pub mod packages;
pub mod preflight;
pub mod probe;
pub mod proxy;
pub mod python_env;
pub mod release;
pub mod service;
pub mod smoke;
pub mod static_assets;
pub mod symlink;
pub mod templates;
#[cfg(test)]
mod testing;

/// Every built-in kind.
pub fn builtin() -> Kinds {
    let mut kinds = Kinds::new();
    kinds.register(Arc::new(release::Release));
    kinds.register(Arc::new(python_env::PythonEnv));
    kinds.register(Arc::new(django::Django));
    kinds.register(Arc::new(collectstatic::Collectstatic));
    kinds.register(Arc::new(migrate::Migrate));
    kinds.register(Arc::new(service::Service));
    kinds.register(Arc::new(health_gate::HealthGate));
    kinds.register(Arc::new(proxy::ProxySwitch));
    kinds.register(Arc::new(smoke::Smoke));
    kinds.register(Arc::new(log_check::LogCheck));
    kinds.register(Arc::new(symlink::Symlink));
    kinds.register(Arc::new(drain_stop::DrainStop));
    kinds.register(Arc::new(packages::Packages));
    kinds.register(Arc::new(exec::Exec));
    kinds.register(Arc::new(http::Http));
    kinds
}
