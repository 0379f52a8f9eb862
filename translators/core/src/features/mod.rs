//! Feature translators of the brick graph: `features/locks`, `features/index`,
//! `features/worm`, `features/bitrot`.

pub mod bitrot;
pub mod index;
pub mod locks;
pub mod worm;
