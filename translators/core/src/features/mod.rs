//! Feature translators of the brick graph: `features/locks`, `features/index`,
//! `features/worm`.

pub mod index;
pub mod locks;
pub mod worm;
