//! Directory trees (repo-format.md §7): one MessagePack array of nodes per directory, sorted by
//! name bytes, stored as a deduplicated tree blob. Encoding is canonical: the same directory
//! always encodes to the same bytes, so unchanged directories keep their tree id.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{from_msgpack, to_msgpack_compact};
use crate::id::{BlobId, TreeId};

/// repo-format.md §7.1: what a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A regular file (code 0), stored as content parts.
    File,
    /// A directory (code 1), whose entries are in [`Node::subtree`].
    Dir,
    /// A symbolic link (code 2), whose target is [`Node::target`].
    Symlink,
    /// A named pipe (code 3).
    Fifo,
    /// A character device (code 4), numbered by [`Node::rdev`].
    CharDevice,
    /// A block device (code 5), numbered by [`Node::rdev`].
    BlockDevice,
    /// A Unix domain socket (code 6): recorded, but a restore skips it.
    Socket,
}

impl NodeKind {
    const ALL: [NodeKind; 7] = [
        NodeKind::File,
        NodeKind::Dir,
        NodeKind::Symlink,
        NodeKind::Fifo,
        NodeKind::CharDevice,
        NodeKind::BlockDevice,
        NodeKind::Socket,
    ];

    /// The node's `kind` byte in a tree (repo-format.md §7.1): 0 file to 6 socket.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The `type` of `cairn ls --json` (docs/cli.md): `"file"`, `"dir"`, `"symlink"`, `"fifo"`,
    /// `"chardev"`, `"blockdev"` or `"socket"`.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "chardev",
            NodeKind::BlockDevice => "blockdev",
            NodeKind::Socket => "socket",
        }
    }

    /// The `ls -l` type letter.
    pub fn letter(self) -> char {
        match self {
            NodeKind::File => '-',
            NodeKind::Dir => 'd',
            NodeKind::Symlink => 'l',
            NodeKind::Fifo => 'p',
            NodeKind::CharDevice => 'c',
            NodeKind::BlockDevice => 'b',
            NodeKind::Socket => 's',
        }
    }
}

impl Serialize for NodeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let c = u8::deserialize(d)?;
        NodeKind::ALL
            .get(c as usize)
            .copied()
            .ok_or_else(|| serde::de::Error::custom(format!("unknown node type {c}")))
    }
}

/// Seconds and nanoseconds since the Unix epoch: `[i64, u32]`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64, pub u32);

impl Timestamp {
    /// The time as nanoseconds since the Unix epoch (negative before 1970).
    pub fn as_nanos(&self) -> i128 {
        self.0 as i128 * 1_000_000_000 + self.1 as i128
    }
}

/// A piece of a file's content: a chunk (`[id, length]`) or a hole (`[nil, length]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentPart(pub Option<BlobId>, pub u64);

impl ContentPart {
    /// The id of the data blob holding this part; None for a hole.
    pub fn chunk(&self) -> Option<BlobId> {
        self.0
    }
    /// The part's length in bytes: the chunk's `raw_length`, or the hole's run of zero bytes.
    pub fn len(&self) -> u64 {
        self.1
    }
    /// Whether the part is zero bytes long.
    pub fn is_empty(&self) -> bool {
        self.1 == 0
    }
}

/// An extended attribute: `[name, value]`, both bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Xattr(
    #[serde(with = "serde_bytes")] pub Vec<u8>,
    #[serde(with = "serde_bytes")] pub Vec<u8>,
);

/// One directory entry (repo-format.md §7.1; fields in this order, as a MessagePack array).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name bytes (never empty, no `/` or NUL, not `.` or `..`).
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// What the entry is; decides which of the fields below are set.
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Numeric id of the owning user.
    pub uid: u32,
    /// Numeric id of the owning group.
    pub gid: u32,
    /// Name of the user `uid` at backup time (invalid UTF-8 replaced by U+FFFD); None when
    /// unknown.
    pub user: Option<String>,
    /// Name of the group `gid` at backup time, likewise; None when unknown.
    pub group: Option<String>,
    /// Last modification time (`st_mtime`).
    pub mtime: Timestamp,
    /// Last status change time (`st_ctime`); access times are not stored.
    pub ctime: Timestamp,
    /// Inode number (`st_ino`).
    pub inode: u64,
    /// Id of the file system holding the entry (`st_dev`).
    pub device: u64,
    /// Hard-link count; with `links > 1`, `(device, inode)` identifies the link group.
    pub links: u64,
    /// Content length in bytes (files), target length (symlinks), 0 otherwise.
    pub size: u64,
    /// File content in order: chunks and holes.
    pub content: Vec<ContentPart>,
    /// Directories: the tree of their entries.
    pub subtree: Option<TreeId>,
    /// Symlinks: the target bytes.
    #[serde(with = "serde_bytes")]
    pub target: Option<Vec<u8>>,
    /// Device nodes: the device number.
    pub rdev: u64,
    /// Extended attributes sorted by name.
    pub xattrs: Vec<Xattr>,
}

impl Node {
    /// A node with every metadata field zero; callers fill in what they know.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            inode: 0,
            device: 0,
            links: 1,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }

    /// Chunk ids of a file's content, holes skipped.
    pub fn chunks(&self) -> impl Iterator<Item = BlobId> + '_ {
        self.content.iter().filter_map(|p| p.0)
    }

    /// The hard-link group this node belongs to, if any.
    pub fn link_group(&self) -> Option<(u64, u64)> {
        (self.kind != NodeKind::Dir && self.links > 1).then_some((self.device, self.inode))
    }
}

/// A directory's entries, sorted by name bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tree {
    /// The entries; [`Tree::encode`] requires them sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

/// Checks a single file name: non-empty, no `/` or NUL, not `.` or `..`.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

impl Tree {
    /// Sorts nodes by name (callers may push in any order).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for n in &mut self.nodes {
            n.xattrs.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }

    fn check(&self) -> Result<(), String> {
        for (i, n) in self.nodes.iter().enumerate() {
            if !valid_name(&n.name) {
                return Err(format!(
                    "invalid entry name {:?}",
                    String::from_utf8_lossy(&n.name)
                ));
            }
            if i > 0 && self.nodes[i - 1].name >= n.name {
                return Err("entries are not sorted by name, or a name repeats".into());
            }
            if n.xattrs.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err("extended attributes are not sorted by name".into());
            }
            let name = || String::from_utf8_lossy(&n.name).into_owned();
            if n.xattrs.iter().any(|x| x.0.is_empty() || x.0.contains(&0)) {
                return Err(format!(
                    "{}: an extended attribute has an empty name or a NUL",
                    name()
                ));
            }
            if n.mtime.1 >= 1_000_000_000 || n.ctime.1 >= 1_000_000_000 {
                return Err(format!("{}: nanoseconds out of range", name()));
            }
            let content_len = n
                .content
                .iter()
                .try_fold(0u64, |acc, p| acc.checked_add(p.1))
                .ok_or_else(|| format!("{}: content length overflows", name()))?;
            if n.kind == NodeKind::File && content_len != n.size {
                return Err(format!(
                    "{}: content parts add up to {content_len} bytes, size says {}",
                    name(),
                    n.size
                ));
            }
            if n.kind != NodeKind::File && !n.content.is_empty() {
                return Err(format!("{}: content on a non-file", name()));
            }
            if (n.kind == NodeKind::Symlink) != n.target.is_some() {
                return Err(format!(
                    "{}: a symlink without a target, or a target on a non-symlink",
                    name()
                ));
            }
            if (n.kind == NodeKind::Dir) != n.subtree.is_some() {
                return Err(
                    "a directory without a subtree, or a subtree on a non-directory".into(),
                );
            }
        }
        Ok(())
    }

    /// Canonical encoding; refuses unsorted or invalid trees.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.check().map_err(Error::InvalidInput)?;
        let bytes = to_msgpack_compact(self)?;
        if bytes.len() > crate::format::MAX_METADATA_LEN {
            return Err(Error::InvalidInput(format!(
                "a directory of {} entries encodes to {} bytes, more than a tree may hold",
                self.nodes.len(),
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// Decodes and validates a tree blob's plaintext.
    pub fn decode(bytes: &[u8], id: &TreeId) -> Result<Tree> {
        let what = || format!("tree {}", id.0.short());
        let t: Tree = from_msgpack(bytes, &what())?;
        t.check().map_err(|why| Error::corrupt(what(), why))?;
        Ok(t)
    }

    /// The entry with this exact name, by binary search (the nodes must be sorted).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_node() -> impl Strategy<Value = Node> {
        (
            proptest::collection::vec(1u8..=255, 1..12),
            0usize..7,
            any::<u32>(),
            any::<(i64, u32)>(),
            proptest::collection::vec((any::<[u8; 32]>(), 1u64..1000), 0..4),
            proptest::collection::vec(
                (proptest::collection::vec(1u8..=255, 1..6), any::<Vec<u8>>()),
                0..3,
            ),
        )
            .prop_map(|(name, k, mode, (s, ns), parts, xattrs)| {
                let name: Vec<u8> = name
                    .into_iter()
                    .map(|b| if b == b'/' { b'x' } else { b })
                    .collect();
                let name = if name == b"." || name == b".." {
                    b"dot".to_vec()
                } else {
                    name
                };
                let kind = NodeKind::ALL[k];
                let mut n = Node::new(name, kind);
                n.mode = mode;
                n.mtime = Timestamp(s, ns % 1_000_000_000);
                if kind == NodeKind::File {
                    n.content = parts
                        .into_iter()
                        .map(|(id, len)| ContentPart(Some(BlobId(id)), len))
                        .collect();
                    n.size = n.content.iter().map(|p| p.1).sum();
                }
                if kind == NodeKind::Dir {
                    n.subtree = Some(TreeId(BlobId([7; 32])));
                }
                if kind == NodeKind::Symlink {
                    n.target = Some(b"target".to_vec());
                }
                n.xattrs = xattrs.into_iter().map(|(a, b)| Xattr(a, b)).collect();
                n.xattrs.sort_by(|a, b| a.0.cmp(&b.0));
                n.xattrs.dedup_by(|a, b| a.0 == b.0);
                n
            })
    }

    proptest! {
        #[test]
        fn tree_encoding_is_canonical(mut nodes in proptest::collection::vec(arb_node(), 0..8)) {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            let mut shuffled = nodes.clone();
            shuffled.reverse();
            let mut t2 = Tree { nodes: shuffled };
            t2.sort();
            let t = Tree { nodes };
            let a = t.encode().unwrap();
            prop_assert_eq!(&a, &t2.encode().unwrap());
            let back = Tree::decode(&a, &TreeId(BlobId([0; 32]))).unwrap();
            prop_assert_eq!(&back, &t);
            prop_assert_eq!(back.encode().unwrap(), a);
        }
    }

    #[test]
    fn unsorted_or_hostile_names_are_refused() {
        let id = TreeId(BlobId([0; 32]));
        for bad in [&b".."[..], b".", b"a/b", b""] {
            let t = Tree {
                nodes: vec![Node::new(bad.to_vec(), NodeKind::Fifo)],
            };
            let bytes = to_msgpack_compact(&t).unwrap();
            assert!(Tree::decode(&bytes, &id).is_err(), "{bad:?} accepted");
        }
        let t = Tree {
            nodes: vec![
                Node::new(b"b".to_vec(), NodeKind::Fifo),
                Node::new(b"a".to_vec(), NodeKind::Fifo),
            ],
        };
        assert!(t.encode().is_err());
        assert!(Tree::decode(&to_msgpack_compact(&t).unwrap(), &id).is_err());
    }
}
