//! Feature translators of the brick graph. Today: `features/locks`.

pub mod locks;
