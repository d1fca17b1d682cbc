//! zdd's step kinds, one module per kind. Each declares its fields ([`zdd_engine::schema::KindSpec`]),
//! what it previews, what it does through the host, and how it is undone.

use zdd_engine::kind::Kinds;

/// Every built-in kind.
pub fn builtin() -> Kinds {
    Kinds::new()
}
