//! A single damaged, zeroed or deleted critical file never locks the user out: the config has
//! a copy inside every key file, and every key file has a copy of its own.

mod common;

use common::*;

fn fixture() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), random_bytes(1, 100_000));
    f.backup(&[&src], &[]);
    (f, src)
}

fn key_file(f: &Fixture) -> std::path::PathBuf {
    std::fs::read_dir(f.repo.join("keys"))
        .expect("keys")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_none())
        .expect("a key file")
}

#[test]
fn a_zeroed_or_deleted_config_is_recovered_from_the_key_files_copy() {
    for damage in ["zero", "delete", "flip"] {
        let (f, src) = fixture();
        let config = f.repo.join("config");
        match damage {
            "zero" => std::fs::write(&config, b"").expect("zero"),
            "delete" => std::fs::remove_file(&config).expect("rm"),
            _ => {
                let mut b = std::fs::read(&config).expect("read");
                b[30] ^= 1;
                std::fs::write(&config, b).expect("write");
            }
        }
        let run = f.cmd().arg("snapshots").run();
        run.ok();
        assert!(
            run.stderr.contains("config"),
            "{damage}: a warning names the config: {}",
            run.stderr
        );
        let run = f.cmd().arg("check").run();
        run.expect(1);
        assert!(
            run.stderr.contains("repair config"),
            "{damage}: {}",
            run.stderr
        );
        f.cmd().args(["repair", "config"]).run().ok();
        f.cmd().args(["check", "--read-data"]).run().ok();
        let target = f.path("out");
        f.restore_latest(&target);
        assert_same_tree(&src, &restored(&target, &src));
    }
}

#[test]
fn a_zeroed_or_deleted_key_file_is_replaced_by_its_copy() {
    for damage in ["zero", "delete"] {
        let (f, _) = fixture();
        let key = key_file(&f);
        if damage == "zero" {
            std::fs::write(&key, b"").expect("zero");
        } else {
            std::fs::remove_file(&key).expect("rm");
        }
        let run = f.cmd().arg("snapshots").run();
        run.ok();
        let run = f.cmd().arg("check").run();
        run.expect(1);
        assert!(run.stderr.contains("key file"), "{damage}: {}", run.stderr);
        // A wrong password is still a wrong password.
        f.cmd_without_password()
            .env("CAIRN_PASSWORD", "nope")
            .arg("snapshots")
            .run()
            .expect(12);
    }
}
