//! The operations of a repository, one file each.

pub mod blame;
pub mod branches;
pub mod checkout;
pub mod checkout_file;
pub mod commit;
pub mod diff;
pub mod gc;
pub mod log;
pub mod merge;
mod read;
mod replace_file;
