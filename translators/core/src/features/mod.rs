//! Feature translators of the brick graph: `features/locks`, `features/index`.

pub mod index;
pub mod locks;
