//! Put-only keys (`key add --put-only`, repo-format.md §2.2) through the real binary: they make
//! backups, incremental ones skipping unchanged files from this machine's own record; they are
//! refused everything that reads or deletes; a full key reads, restores, checks and prunes what
//! they wrote; and nothing in a put-only key file opens what the repository stores.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use cairn::format::crypto::{open_key_file, ObjectKind, PUBLIC_MAGIC};
use cairn::format::pack::read_pack;

use common::*;

const PUT_PASSWORD: &str = "a put-only password";

/// A repository with a put-only key for [`PUT_PASSWORD`] besides the full key.
fn fixture_with_put_only_key() -> Fixture {
    let f = Fixture::small_packs();
    let out = f
        .cmd()
        .args(["key", "add", "--put-only", "--kdf-memory-mib", "8"])
        .env("CAIRN_NEW_PASSWORD", PUT_PASSWORD)
        .run();
    out.ok();
    f
}

/// `cairn -r REPO` with the put-only key's password.
fn put(f: &Fixture) -> TestCommand {
    f.cmd_without_password().env("CAIRN_PASSWORD", PUT_PASSWORD)
}

fn put_backup(f: &Fixture, src: &Path) -> serde_json::Value {
    let run = put(f).args(["--json", "backup"]).arg(src).run();
    run.ok();
    run.summary()
}

fn make_source(f: &Fixture) -> PathBuf {
    let src = f.path("src");
    fs::create_dir_all(src.join("docs/deep")).expect("mkdir");
    write(src.join("a.bin"), random_bytes(1, 3_000_000));
    write(
        src.join("docs/b.txt"),
        b"the same words, many times over. ".repeat(5000),
    );
    write(src.join("docs/deep/c.bin"), random_bytes(2, 700_000));
    write(src.join("empty"), b"");
    std::os::unix::fs::symlink("a.bin", src.join("link")).expect("symlink");
    src
}

fn restore_snapshot(f: &Fixture, id: &str, target: &Path) {
    f.cmd()
        .args(["restore", id, "--target"])
        .arg(target)
        .run()
        .ok();
}

#[test]
fn a_put_only_key_backs_up_twice_reading_no_unchanged_file_and_the_full_key_restores_both() {
    let f = fixture_with_put_only_key();
    let src = make_source(&f);
    let total: u64 = 3_000_000 + 33 * 5000 + 700_000;

    let first = put_backup(&f, &src);
    assert_eq!(first["bytes_read"], total, "{first}");
    assert_eq!(first["files_new"], 4, "{first}");
    let second = put_backup(&f, &src);
    assert_eq!(
        second["bytes_read"], 0,
        "an unchanged tree is not read again: {second}"
    );
    assert_eq!(second["files_unmodified"], 4, "{second}");
    // Only trees are new: the directories above the source changed (the cache is in there).
    assert!(second["data_added"].as_u64().expect("n") < 1000, "{second}");
    let (s1, s2) = (
        first["snapshot_id"].as_str().expect("id").to_string(),
        second["snapshot_id"].as_str().expect("id").to_string(),
    );
    assert_ne!(s1, s2);

    // The full key lists both, restores both exactly, and finds nothing wrong.
    let listed = f.cmd().args(["--json", "snapshots"]).run();
    listed.ok();
    let ids: Vec<String> = listed
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    assert!(ids.contains(&s1) && ids.contains(&s2), "{ids:?}");
    for (i, id) in [&s1, &s2].into_iter().enumerate() {
        let target = f.path(format!("restored-{i}"));
        restore_snapshot(&f, id, &target);
        assert_same_entries(&src, &restored(&target, &src));
    }
    f.cmd().args(["check", "--read-data"]).run().ok();

    // A changed file is read again, alone.
    write(src.join("docs/deep/c.bin"), random_bytes(3, 700_000));
    let third = put_backup(&f, &src);
    assert_eq!(third["bytes_read"], 700_000, "{third}");
    assert_eq!(third["files_changed"], 1, "{third}");
    let target = f.path("restored-2");
    restore_snapshot(&f, third["snapshot_id"].as_str().expect("id"), &target);
    assert_same_entries(&src, &restored(&target, &src));
}

#[test]
fn a_put_only_key_is_refused_everything_that_reads_or_deletes() {
    let f = fixture_with_put_only_key();
    let src = make_source(&f);
    let id = put_backup(&f, &src)["snapshot_id"]
        .as_str()
        .expect("id")
        .to_string();
    let other = f.path("other-repo");
    let before = f.repo_files();
    let refused: Vec<Vec<String>> = vec![
        vec![
            "restore".into(),
            "latest".into(),
            "--target".into(),
            f.path("t").display().to_string(),
        ],
        vec!["ls".into(), "latest".into()],
        vec!["diff".into(), id.clone(), id.clone()],
        vec!["dump".into(), format!("{id}:/")],
        vec!["forget".into(), "--keep-last".into(), "1".into()],
        vec!["prune".into()],
        vec!["key".into(), "list".into()],
        vec!["key".into(), "add".into()],
        vec!["snapshots".into()],
        vec!["check".into(), "--read-data".into()],
        vec!["find".into(), "*".into()],
        vec!["stats".into()],
        vec!["unlock".into()],
        vec!["repair".into(), "index".into()],
        vec!["tag".into(), "latest".into(), "--add".into(), "x".into()],
        vec!["copy".into(), "--to".into(), other.display().to_string()],
    ];
    for args in refused {
        let run = put(&f)
            .args(&args)
            .env("CAIRN_NEW_PASSWORD", "x")
            .env("CAIRN_TO_PASSWORD", "x")
            .run();
        run.expect(1);
        let out = run.output();
        assert!(
            out.contains("this is a put-only key") && out.contains(&format!("`cairn {}`", args[0])),
            "{args:?}: {out}"
        );
    }
    assert_eq!(
        f.repo_files(),
        before,
        "a refused command changed the repository"
    );
    assert!(!f.path("t").exists());
}

#[test]
fn after_a_prune_the_put_only_record_never_points_at_data_that_is_gone() {
    let f = fixture_with_put_only_key();
    let src = make_source(&f);
    let first = put_backup(&f, &src);
    let id = first["snapshot_id"].as_str().expect("id").to_string();
    // The full key forgets the only snapshot and prunes: every pack goes.
    f.cmd().args(["forget", &id]).run().ok();
    f.cmd().args(["prune"]).run().ok();
    assert!(f.packs().is_empty(), "{:?}", f.packs());
    // The record's index file is gone, so nothing counts as stored: all is read and sent.
    let again = put_backup(&f, &src);
    assert_eq!(again["bytes_read"], first["bytes_read"], "{again}");
    let target = f.path("restored");
    f.restore_latest(&target);
    assert_same_entries(&src, &restored(&target, &src));
    f.cmd().args(["check", "--read-data"]).run().ok();
}

#[test]
fn a_full_key_backs_up_prunes_and_checks_a_repository_mixed_with_put_only_snapshots() {
    let f = fixture_with_put_only_key();
    let src = make_source(&f);
    f.backup(&[&src], &[]);
    put_backup(&f, &src);
    write(src.join("new.bin"), random_bytes(9, 1_500_000));
    put_backup(&f, &src);
    f.cmd().args(["forget", "--keep-last", "1"]).run().ok();
    f.cmd().args(["prune"]).run().ok();
    f.cmd().args(["check", "--read-data"]).run().ok();
    let target = f.path("restored");
    f.restore_latest(&target);
    assert_same_entries(&src, &restored(&target, &src));
}

/// The repository's config says format 2 once a put-only key exists: a cairn that reads only
/// format 1 refuses it rather than taking sealed-to-public objects for damage.
#[test]
fn adding_a_put_only_key_raises_the_format_version() {
    let f = fixture_with_put_only_key();
    let repo = cairn::Repository::open(
        std::sync::Arc::new(cairn::backend::LocalBackend::new(f.repo.clone())),
        PASSWORD.as_bytes(),
    )
    .expect("opens");
    assert_eq!(repo.config().version, 2);
}

fn open_raw(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> bool {
    if sealed.len() < 40 {
        return false;
    }
    let cipher = XChaCha20Poly1305::new_from_slice(key).expect("32-byte key");
    cipher
        .decrypt(
            XNonce::from_slice(&sealed[..24]),
            Payload {
                msg: &sealed[24..],
                aad,
            },
        )
        .is_ok()
}

fn aad(kind: u8) -> Vec<u8> {
    let mut a = b"cairn\x01".to_vec();
    a.push(kind);
    a
}

/// Whether `key` opens `sealed` as a public envelope when taken as the X25519 secret key
/// (repo-format.md §4.6).
fn opens_as_x25519_secret(key: &[u8; 32], public: &[u8; 32], kind: u8, sealed: &[u8]) -> bool {
    let Some(rest) = sealed.strip_prefix(PUBLIC_MAGIC.as_slice()) else {
        return false;
    };
    let mut eph = [0u8; 32];
    eph.copy_from_slice(&rest[..32]);
    let shared =
        x25519_dalek::StaticSecret::from(*key).diffie_hellman(&x25519_dalek::PublicKey::from(eph));
    let mut material = shared.as_bytes().to_vec();
    material.extend_from_slice(&eph);
    material.extend_from_slice(public);
    let k = blake3::derive_key("cairn v2 x25519 envelope key", &material);
    open_raw(&k, &aad(kind), &rest[32..])
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for rel in walk(dir) {
        let p = dir.join(&rel);
        if p.is_file() {
            out.push(fs::read(p).expect("read"));
        }
    }
    out
}

#[test]
fn nothing_in_a_put_only_key_file_opens_the_repositorys_secrets() {
    let f = fixture_with_put_only_key();
    let src = make_source(&f);
    f.backup(&[&src], &[]);
    put_backup(&f, &src);

    // The two key files: which is which, by password.
    let keys = fs::read_dir(f.repo.join("keys"))
        .expect("keys/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_none())
        .map(|p| fs::read(p).expect("read"))
        .collect::<Vec<_>>();
    assert_eq!(keys.len(), 2);
    let put_file = keys
        .iter()
        .find(|k| open_key_file(k, PUT_PASSWORD.as_bytes()).is_ok())
        .expect("the put-only key file");
    let full_file = keys
        .iter()
        .find(|k| open_key_file(k, PASSWORD.as_bytes()).is_ok())
        .expect("the full key file");
    assert!(open_key_file(full_file, PUT_PASSWORD.as_bytes()).is_err());
    let (put_keys, info) = open_key_file(put_file, PUT_PASSWORD.as_bytes()).expect("opens");
    assert!(put_keys.is_put_only() && info.put_only.is_some());
    let (full_keys, _) = open_key_file(full_file, PASSWORD.as_bytes()).expect("opens");

    let config = fs::read(f.repo.join("config")).expect("config");
    let indexes = files_in(&f.repo.join("index"));
    let snapshots = files_in(&f.repo.join("snapshots"));
    let packs = files_in(&f.repo.join("data"));
    // Both kinds of envelope are there: the full key's backup and the put-only key's.
    for set in [&indexes, &snapshots] {
        assert!(set.iter().any(|b| b.starts_with(&PUBLIC_MAGIC)));
        assert!(set.iter().any(|b| !b.starts_with(&PUBLIC_MAGIC)));
    }

    // Through the library: the put-only keys open nothing; the full keys open everything.
    for (kind, objects) in [
        (ObjectKind::Config, std::slice::from_ref(&config)),
        (ObjectKind::Index, &indexes[..]),
        (ObjectKind::Snapshot, &snapshots[..]),
    ] {
        for o in objects {
            assert!(put_keys.open(kind, b"", o).is_err(), "{kind:?} opened");
            assert!(
                full_keys.open(kind, b"", o).is_ok(),
                "{kind:?} did not open"
            );
        }
    }
    for p in &packs {
        assert!(read_pack(&put_keys, p).is_err(), "a pack header opened");
        assert!(read_pack(&full_keys, p).is_ok());
    }

    // By hand: every 32 bytes of the opened put-only payload, taken as the `enc` key, as the
    // X25519 secret key, or as the key that opens the full key file's payload, opens nothing.
    #[derive(serde::Deserialize)]
    struct KeyFileMap {
        m_cost_kib: u32,
        t_cost: u32,
        p_cost: u32,
        #[serde(with = "serde_bytes")]
        salt: Vec<u8>,
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
    }
    let kf: KeyFileMap = rmp_serde::from_slice(put_file).expect("key file map");
    let params =
        argon2::Params::new(kf.m_cost_kib, kf.t_cost, kf.p_cost, Some(32)).expect("params");
    let mut kek = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(PUT_PASSWORD.as_bytes(), &kf.salt, &mut kek)
        .expect("Argon2id");
    let cipher = XChaCha20Poly1305::new_from_slice(&kek).expect("key");
    let payload = cipher
        .decrypt(
            XNonce::from_slice(&kf.sealed[..24]),
            Payload {
                msg: &kf.sealed[24..],
                aad: &aad(7),
            },
        )
        .expect("the put-only payload opens with its password");
    let full_kf: KeyFileMap = rmp_serde::from_slice(full_file).expect("key file map");
    let public = put_keys.public_key();
    let mut candidates: Vec<[u8; 32]> = payload
        .windows(32)
        .map(|w| w.try_into().expect("32 bytes"))
        .collect();
    candidates.push(kek);
    for c in &candidates {
        assert!(!open_raw(c, &aad(1), &config), "config opened");
        assert!(
            !open_raw(c, &aad(7), &full_kf.sealed),
            "the full key's payload opened"
        );
        let derived = blake3::derive_key("cairn v2 x25519 secret key", c);
        for (kind, objects) in [(5u8, &indexes), (6u8, &snapshots)] {
            for o in objects {
                assert!(!open_raw(c, &aad(kind), o), "kind {kind} opened as enc");
                for secret in [c, &derived] {
                    assert!(
                        !opens_as_x25519_secret(secret, &public, kind, o),
                        "kind {kind} opened as X25519"
                    );
                }
            }
        }
    }
    // The control: the full key's `enc` (derived from its password) does open them.
    let enc = full_keys.enc().expect("full").0;
    assert!(open_raw(&enc, &aad(1), &config));
    let x = blake3::derive_key("cairn v2 x25519 secret key", &enc);
    assert!(snapshots
        .iter()
        .filter(|s| s.starts_with(&PUBLIC_MAGIC))
        .all(|s| opens_as_x25519_secret(&x, &public, 6, s)));
}

/// A put-only key cannot read a full key's lock, so it takes any such lock for a prune and
/// waits (exit 11); a full key reads a put-only backup's lock like its own.
#[test]
fn a_put_only_backup_waits_for_a_full_keys_lock_and_a_full_key_reads_its_lock() {
    let f = fixture_with_put_only_key();
    let src = make_source(&f);
    let open = |pw: &str| {
        cairn::Repository::open(
            std::sync::Arc::new(cairn::backend::LocalBackend::new(f.repo.clone())),
            pw.as_bytes(),
        )
        .expect("opens")
    };
    let full = open(PASSWORD);
    let held = cairn::repo::lock::RepoLock::acquire(&full, false, "check", "elsewhere")
        .expect("a shared lock");
    let run = put(&f).args(["backup"]).arg(&src).run();
    run.expect(11);
    assert!(run.output().contains("locked"), "{}", run.output());
    drop(held);
    put_backup(&f, &src);

    let put_only = open(PUT_PASSWORD);
    let held = cairn::repo::lock::RepoLock::acquire(&put_only, false, "backup", "elsewhere")
        .expect("a shared lock");
    let locks = cairn::repo::lock::list_locks(&full).expect("list");
    assert_eq!(locks.len(), 1);
    let info = locks[0]
        .1
        .as_ref()
        .expect("the full key reads a put-only key's lock");
    assert_eq!(info.command, "backup");
    assert!(cairn::repo::lock::list_locks(&put_only).expect("list")[0]
        .1
        .is_ok());
    drop(held);
}

#[test]
fn a_new_key_whose_password_already_opens_a_key_is_refused_and_nothing_is_written() {
    // `open` takes the first key file a password opens: a put-only key sharing the full key's
    // password would give whoever types it the full key, so neither direction is allowed.
    let f = fixture_with_put_only_key();
    let keys = f.repo.join("keys");
    let before = files_in(&keys);
    let config = fs::read(f.repo.join("config")).expect("config");
    for (password, put_only) in [
        (PASSWORD, true),
        (PUT_PASSWORD, true),
        (PUT_PASSWORD, false),
    ] {
        let mut args = vec!["key", "add", "--kdf-memory-mib", "8"];
        if put_only {
            args.push("--put-only");
        }
        let run = f.cmd().args(args).env("CAIRN_NEW_PASSWORD", password).run();
        assert_eq!(
            run.code, 1,
            "{password:?} put-only {put_only}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("already opens key"),
            "{password:?}: {}",
            run.stderr
        );
    }
    assert_eq!(files_in(&keys), before, "no key file was added");
    assert_eq!(fs::read(f.repo.join("config")).expect("config"), config);
    // A password of its own is taken.
    f.cmd()
        .args(["key", "add", "--put-only", "--kdf-memory-mib", "8"])
        .env("CAIRN_NEW_PASSWORD", "a third password")
        .run()
        .ok();
}
