//! The test harness itself: a throwaway cluster keeps its files where the user it runs as
//! can reach them, wherever the repository was cloned (as root, `initdb` runs as `postgres`,
//! which cannot enter `/root/...` or a `mktemp -d`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use crate::support::{Cluster, output_text, run};

/// Whether `uid`/`gid` may enter the directory described by `meta` (by its mode bits; root
/// may enter any).
fn traversable(meta: &std::fs::Metadata, (uid, gid): (u32, u32)) -> bool {
    let mode = meta.mode();
    if uid == 0 {
        true
    } else if meta.uid() == uid {
        mode & 0o100 != 0
    } else if meta.gid() == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

#[test]
fn cluster_files_live_outside_the_clone_where_their_owner_can_reach_them() {
    let cluster = Cluster::shared();
    let dir = &cluster.dir;
    let user = cluster.server_user();
    assert!(
        !dir.starts_with(env!("CARGO_MANIFEST_DIR")),
        "{} is inside the clone",
        dir.display()
    );
    assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());

    let meta = std::fs::metadata(dir).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700, "{} is private", dir.display());
    assert_eq!(
        (meta.uid(), meta.gid()),
        user,
        "{} belongs to the server's user",
        dir.display()
    );
    for ancestor in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor).unwrap();
        assert!(
            traversable(&meta, user),
            "uid {} cannot enter {} (mode {:o})",
            user.0,
            ancestor.display(),
            meta.mode() & 0o7777
        );
    }
    for file in ["data", "pwfile", "postgres.log"] {
        assert!(dir.join(file).exists(), "{file} is in {}", dir.display());
    }
}

#[test]
fn a_private_cluster_starts_from_a_0700_working_directory() {
    // A clone under a private directory, as `/root/x` or `mktemp -d`: this test binary runs
    // the test below again with that directory as its working directory.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cwd.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "harness::a_private_cluster_in_the_working_directory",
        "--ignored",
        "--test-threads=1",
    ])
    .current_dir(cwd.path());
    let out = run(&mut cmd, None, Duration::from_secs(120));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run by a_private_cluster_starts_from_a_0700_working_directory, from such a directory"]
fn a_private_cluster_in_the_working_directory() {
    let cluster = Cluster::private();
    let db = cluster.create_db();
    assert_eq!(db.psql("select 1"), "1");
}
