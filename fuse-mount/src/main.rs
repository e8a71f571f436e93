//! `cairn-mount`: the FUSE filesystem. Not built yet (the FUSE issue); this placeholder
//! says so plainly instead of pretending to mount.

fn main() {
    eprintln!(
        "cairn-mount: the FUSE mount is not implemented yet; use the object CLI (cairn put/get)"
    );
    std::process::exit(2);
}
