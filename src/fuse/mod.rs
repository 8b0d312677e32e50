//! The kernel edge: adapters from `fuser` callbacks to filesystems.
//!
//! Invariants:
//! - No filesystem logic lives here: callbacks translate arguments, call
//!   the filesystem, and translate results and errors (to errno).
//! - This is the only layer, with the CLI's process handling, allowed to
//!   use `unsafe` (libc calls), each use with a comment on why it is sound.

pub mod drive_fs;
pub mod options;
pub mod reply_fit;
pub mod settings;
pub mod static_fs;

pub use drive_fs::DriveFs;
pub use static_fs::StaticFs;
