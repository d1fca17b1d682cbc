//! zdd's step kinds, one module per kind. Each declares its fields ([`zdd_engine::schema::KindSpec`]),
//! what it previews, what it does through the host, and how it is undone.

use std::sync::Arc;

use zdd_engine::kind::Kinds;

pub mod exec;
pub mod http;

/// Every built-in kind.
pub fn builtin() -> Kinds {
    let mut kinds = Kinds::new();
    kinds.register(Arc::new(exec::Exec));
    kinds.register(Arc::new(http::Http));
    kinds
}
