use super::run::{Run, BLOCK, PER_BLOCK};
use super::*;
use crate::pack::BlobKind;

fn blob(i: u64) -> BlobId {
    BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

fn pack_id(i: u64) -> PackId {
    PackId(*blake3::hash(format!("pack {i}").as_bytes()).as_bytes())
}

fn file_id(i: u64) -> IndexId {
    IndexId(*blake3::hash(format!("index {i}").as_bytes()).as_bytes())
}

/// An index file of `packs` packs holding blobs `first..first+n`, `per_pack` to a pack.
fn index_file(first: u64, n: u64, per_pack: u64) -> IndexFile {
    let mut packs = Vec::new();
    let mut i = first;
    while i < first + n {
        let end = (i + per_pack).min(first + n);
        packs.push(IndexPack {
            id: pack_id(i),
            size: 1000 + i,
            blobs: (i..end)
                .map(|b| PackEntry {
                    kind: if b % 7 == 0 {
                        BlobKind::Tree
                    } else {
                        BlobKind::Data
                    },
                    id: blob(b),
                    offset: (b - i) as u32 * 100,
                    length: 90 + (b % 5) as u32,
                    raw_length: b as u32,
                })
                .collect(),
        });
        i = end;
    }
    IndexFile {
        supersedes: Vec::new(),
        packs,
    }
}

fn expect_at(index: &Index, b: u64, pack: PackId) {
    let loc = index
        .get(&blob(b))
        .unwrap_or_else(|| panic!("blob {b} not found"));
    assert_eq!(loc.pack, pack, "blob {b}");
    assert_eq!(loc.entry.id, blob(b));
    assert_eq!(loc.entry.raw_length, b as u32);
}

#[test]
fn every_blob_of_every_file_is_found_where_its_file_put_it_and_no_other_is() {
    let mut index = Index::new();
    // Sizes around block boundaries: empty, one, a block exactly, a block and one, many.
    let sizes = [0, 1, PER_BLOCK as u64, PER_BLOCK as u64 + 1, 5_000];
    let mut first = 0;
    for (k, n) in sizes.iter().enumerate() {
        index
            .add_index_file(file_id(k as u64), &index_file(first, *n, 37))
            .expect("run");
        first += n;
    }
    for b in 0..first {
        // Packs restart at each file's first blob; find the pack the way index_file does.
        let mut start = 0;
        for n in sizes {
            if b < start + n {
                break;
            }
            start += n;
        }
        let pack = pack_id(start + (b - start) / 37 * 37);
        expect_at(&index, b, pack);
    }
    for b in first..first + 20_000 {
        assert!(!index.contains(&blob(b)), "blob {b} was never indexed");
    }
    assert_eq!(index.blob_count(), first);
    assert!(index.take_problems().is_empty());
}

#[test]
fn a_blob_in_two_packs_resolves_to_the_first_file_and_both_copies_are_listed() {
    let mut index = Index::new();
    let a = index_file(0, 10, 10);
    let mut b = index_file(0, 10, 10);
    b.packs[0].id = pack_id(999);
    // file_id(1) sorts before or after file_id(2): the run order follows the ids.
    let (first, second) = if file_id(1) < file_id(2) {
        (1, 2)
    } else {
        (2, 1)
    };
    index.add_index_file(file_id(1), &a).expect("run");
    index.add_index_file(file_id(2), &b).expect("run");
    let dir = tempfile::tempdir().expect("tmp");
    let mut loaded = Index::in_dir(dir.path().to_path_buf(), &[7; 32]);
    for (k, f) in [(1, &a), (2, &b)] {
        loaded.cache_index_file(file_id(k), f).expect("cache");
    }
    loaded
        .load(&[file_id(1), file_id(2)], &HashSet::new(), |_| None)
        .expect("load");
    let want = if first == 1 { pack_id(0) } else { pack_id(999) };
    let _ = second;
    for b in 0..10 {
        expect_at(&loaded, b, want);
    }
    let by_pack = loaded.entries_by_pack().expect("scan");
    assert_eq!(by_pack[&pack_id(0)].1.len(), 10);
    assert_eq!(by_pack[&pack_id(999)].1.len(), 10);
}

#[test]
fn a_cached_run_is_reused_a_stale_one_deleted_and_a_missing_one_built_from_its_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = [3u8; 32];
    let files: Vec<IndexFile> = (0..3).map(|k| index_file(k * 1000, 1000, 50)).collect();
    {
        let mut first = Index::in_dir(dir.path().to_path_buf(), &key);
        for (k, f) in files.iter().enumerate() {
            first.add_index_file(file_id(k as u64), f).expect("run");
        }
    }
    // File 1 is superseded now; file 3 is new and has no run yet.
    let newer = index_file(3000, 500, 50);
    let mut reads = Vec::new();
    let mut again = Index::in_dir(dir.path().to_path_buf(), &key);
    again
        .load(
            &[file_id(0), file_id(2), file_id(3)],
            &HashSet::new(),
            |id| {
                reads.push(*id);
                (*id == file_id(3)).then(|| newer.clone())
            },
        )
        .expect("load");
    assert_eq!(
        reads,
        vec![file_id(3)],
        "only the file without a run is read"
    );
    expect_at(&again, 10, pack_id(0));
    expect_at(&again, 2010, pack_id(2000));
    expect_at(&again, 3499, pack_id(3450));
    assert!(
        !again.contains(&blob(1500)),
        "the superseded file's blobs are gone"
    );
    let runs: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".run"))
        .collect();
    assert_eq!(runs.len(), 3, "the stale run was deleted");
}

#[test]
fn a_damaged_run_is_never_believed_and_is_rebuilt_on_the_next_load() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = [5u8; 32];
    let f = index_file(0, 3 * PER_BLOCK as u64, 40);
    let mut index = Index::in_dir(dir.path().to_path_buf(), &key);
    index.add_index_file(file_id(0), &f).expect("run");
    let path = index.runs()[0].path().to_path_buf();
    drop(index);
    // Flip one byte of the second block's entries: the blob there has another pack number.
    let len = std::fs::metadata(&path).expect("meta").len();
    let at = len - 2 * BLOCK as u64 + 40;
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[at as usize] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    let mut damaged = Index::in_dir(dir.path().to_path_buf(), &key);
    damaged
        .load(&[file_id(0)], &HashSet::new(), |_| None)
        .expect("load");
    let mut hits = 0;
    for b in 0..3 * PER_BLOCK as u64 {
        if let Some(loc) = damaged.get(&blob(b)) {
            assert_eq!(loc.pack, pack_id(b - b % 40), "blob {b} is never misplaced");
            hits += 1;
        }
    }
    // The damaged block's entries are absent (and a lookup that starts in the block before the
    // next one, when the id opens that block).
    assert!(
        (2 * PER_BLOCK - 1..=2 * PER_BLOCK).contains(&hits),
        "{hits} of {} found",
        3 * PER_BLOCK
    );
    assert_eq!(damaged.take_problems().len(), 1);
    assert!(!path.exists(), "the damaged run is deleted");
    let mut rebuilt = Index::in_dir(dir.path().to_path_buf(), &key);
    rebuilt
        .load(&[file_id(0)], &HashSet::new(), |_| Some(f.clone()))
        .expect("load");
    assert!((0..3 * PER_BLOCK as u64).all(|b| rebuilt.contains(&blob(b))));
    // A run written under another key is not believed either.
    let mut other = Index::in_dir(dir.path().to_path_buf(), &[6u8; 32]);
    other
        .load(&[file_id(0)], &HashSet::new(), |_| None)
        .expect("load");
    assert!(!other.contains(&blob(0)));
}

#[test]
fn many_small_files_are_merged_into_few_runs_that_still_find_everything() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = [9u8; 32];
    let mut index = Index::in_dir(dir.path().to_path_buf(), &key);
    let n = 40;
    for k in 0..n {
        index
            .add_index_file(file_id(k), &index_file(k * 100, 100, 30))
            .expect("run");
    }
    // Merged as they are added (a long backup adds one every 30 seconds).
    assert!(index.runs().len() < MERGE_AT, "{} runs", index.runs().len());
    let live: Vec<IndexId> = (0..n).map(file_id).collect();
    drop(index);
    let mut loaded = Index::in_dir(dir.path().to_path_buf(), &key);
    loaded.load(&live, &HashSet::new(), |_| None).expect("load");
    assert!(
        loaded.runs().len() < MERGE_AT,
        "{} runs",
        loaded.runs().len()
    );
    for b in 0..n * 100 {
        expect_at(&loaded, b, pack_id(b - b % 100 + (b % 100) / 30 * 30));
    }
    let mut marks = loaded.marks();
    let (pos, _) = loaded.locate(&blob(77)).expect("found");
    assert!(marks.set(pos));
    assert!(!marks.set(pos));
    let scanned: u64 = (0..loaded.runs().len())
        .map(|r| {
            loaded
                .scan(r)
                .filter(|e| e.as_ref().is_ok_and(|(p, _, _)| marks.get(*p)))
                .count() as u64
        })
        .sum();
    assert_eq!(scanned, 1);
    // The merged runs are what a later load finds.
    let mut later = Index::in_dir(dir.path().to_path_buf(), &key);
    later
        .load(&live, &HashSet::new(), |_| panic!("no file is read again"))
        .expect("load");
    assert_eq!(later.runs().len(), loaded.runs().len());
}

#[test]
fn a_run_file_of_the_wrong_length_or_magic_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = [1u8; 32];
    let mut index = Index::in_dir(dir.path().to_path_buf(), &key);
    index
        .add_index_file(file_id(0), &index_file(0, 10, 10))
        .expect("run");
    let path = index.runs()[0].path().to_path_buf();
    let bytes = std::fs::read(&path).expect("read");
    for cut in [0, 8, 63, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).expect("write");
        assert!(
            Run::open(&path, &run::mac_key(&key)).is_err(),
            "cut at {cut}"
        );
    }
    let mut wrong = bytes.clone();
    wrong[0] = b'X';
    std::fs::write(&path, &wrong).expect("write");
    assert!(Run::open(&path, &run::mac_key(&key)).is_err());
}
