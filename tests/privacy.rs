//! What the repository shows without the password: pack sizes do not give away the size of
//! a small file backed up alone (repo-format.md §6.4, §11).

mod common;

use common::*;

/// Before padding, backing up one small file made a data pack of exactly its size plus 130
/// bytes. Now files from 1 byte to 12 KB, each backed up alone, all make packs of one size.
#[test]
fn a_small_file_backed_up_alone_does_not_show_its_size() {
    let mut sizes = std::collections::BTreeSet::new();
    for (i, len) in [1usize, 100, 1000, 5000, 12_000].into_iter().enumerate() {
        let f = Fixture::new();
        let src = f.path("src");
        write(src.join("secret"), random_bytes(i as u64, len));
        f.backup(&[&src], &[]);
        let packs: Vec<u64> = f
            .packs()
            .iter()
            .map(|p| std::fs::metadata(p).expect("stat").len())
            .collect();
        assert_eq!(packs.len(), 2, "one data pack and one tree pack");
        for size in &packs {
            assert!(
                *size != len as u64 + 130,
                "a pack of exactly the file's size plus 130 bytes"
            );
        }
        sizes.extend(packs);
    }
    assert_eq!(sizes.len(), 1, "pack sizes differ between files: {sizes:?}");
}
