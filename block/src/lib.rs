//! Block volumes: where they live in the namespace and their life cycle (`catalog`), an
//! attached volume as a block device (`volume`, over the `device` contract) with the
//! bookkeeping of its background compaction (`fragmentation`), and the NBD server that
//! exports one (`nbd`). ARCHITECTURE.md, "Block volumes", has the picture.

pub mod catalog;
pub mod device;
pub mod fragmentation;
pub mod nbd;
pub mod volume;
