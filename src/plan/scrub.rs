//! Scrubbing one target of a plan run (src/plan/mod.rs, "Scrubbing"): read a share of its packs
//! as `check --read-data-subset` does, heal what is damaged from parity (`repair packs`), then
//! what parity cannot rebuild from the target's sibling (`repair packs --from`), and fail the
//! target, naming the damage, when something stays unreadable.
//!
//! Healing never makes damage worse (src/parity/mod.rs, src/check/sibling/): a pack is rebuilt
//! only byte-identically, a blob taken from the sibling only when its id here matches.

use std::path::PathBuf;

use serde::{Serialize, Serializer};

use super::host::{PlanEvent, PlanHost};
use super::run::{step, Failure};
use super::RepoDef;
use crate::check::{check, CheckOptions, ReadData};
use crate::repo::Repository;

/// The scrub on one target.
#[derive(Clone, Debug, Serialize)]
pub struct ScrubStep {
    /// `"100%"`, `"10%"`: the share of packs read ([`RepoDef::scrub_subset`]).
    #[serde(serialize_with = "share")]
    pub read_data_subset: ReadData,
    /// Packs downloaded and verified.
    pub packs_read: u64,
    /// Bytes of those packs.
    pub bytes_read: u64,
    /// The damage the reading found, each a sentence naming the damaged object.
    pub found: Vec<String>,
    /// Packs rebuilt from parity, byte for byte.
    pub healed_by_parity: usize,
    /// The sibling healed from (its repository name), if one was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sibling: Option<String>,
    /// Blobs taken from the sibling, each verified by its id here.
    pub healed_from_sibling: u64,
    /// What stays damaged (empty: the target is whole again), each a sentence.
    pub unhealed: Vec<String>,
}

impl ScrubStep {
    /// Nothing stays damaged.
    pub fn ok(&self) -> bool {
        self.unhealed.is_empty()
    }
}

/// `"100%"` for everything, `"N%"`, `"n/m"`.
fn share<S: Serializer>(r: &ReadData, s: S) -> Result<S::Ok, S::Error> {
    match r {
        ReadData::All => s.serialize_str("100%"),
        ReadData::Percent(p) => s.serialize_str(&format!("{p}%")),
        ReadData::Slice(n, m) => s.serialize_str(&format!("{n}/{m}")),
        ReadData::None => s.serialize_str("0%"),
    }
}

/// Scrubs `repo` (target `r`, its index loaded), under an exclusive lock: healing writes.
/// `sibling` is `r.sibling`'s definition, if the plan file has one.
pub(super) fn scrub<H: PlanHost>(
    host: &mut H,
    repo: &mut Repository,
    r: &RepoDef,
    sibling: Option<&RepoDef>,
    check_state: Option<PathBuf>,
) -> Result<ScrubStep, Failure<H::Error>> {
    let _lock = host
        .lock(repo, true, "plan run (scrub)")
        .map_err(Failure::Host)?;
    let opts = CheckOptions {
        read_data: r.scrub_subset,
        state_file: check_state,
        now_ns: host.now_ns(),
        ..CheckOptions::default()
    };
    let c = check(repo, &opts).map_err(step("scrub"))?;
    let mut s = ScrubStep {
        read_data_subset: r.scrub_subset,
        packs_read: c.packs_read,
        bytes_read: c.bytes_read,
        found: c.errors,
        healed_by_parity: 0,
        sibling: None,
        healed_from_sibling: 0,
        unhealed: Vec::new(),
    };
    if s.found.is_empty() {
        host.event(PlanEvent::Scrub(&s));
        return Ok(s);
    }
    // Parity first: it needs nothing but this disk.
    let parity = crate::parity::heal(repo).map_err(step("scrub: healing from parity"))?;
    s.healed_by_parity = parity.healed.len();
    let mut left: Vec<String> = parity
        .unhealable
        .iter()
        .map(|(id, why)| format!("pack {}: {why}", id.to_hex()))
        .collect();
    // Then the sibling, for what parity could not rebuild (or what check found beyond packs).
    if !left.is_empty() || parity.healed.is_empty() {
        match sibling {
            Some(def) if host.present(def).is_ok() => {
                let mut other = host.open(def).map_err(Failure::Host)?;
                let _their_lock = host
                    .lock(&other, false, "plan run (scrub: healing a sibling)")
                    .map_err(Failure::Host)?;
                other
                    .load_index()
                    .map_err(step("scrub: the sibling's index"))?;
                let h = crate::check::sibling::heal_from(
                    repo,
                    &other,
                    &crate::check::sibling::HealOptions::default(),
                )
                .map_err(step("scrub: healing from the sibling"))?;
                s.sibling = Some(def.name.clone());
                s.healed_from_sibling = h.blobs_healed;
                left = h
                    .affected
                    .iter()
                    .map(|a| {
                        format!(
                            "snapshot {}: {} ({})",
                            a.snapshot.short(),
                            a.path.display(),
                            a.why
                        )
                    })
                    .collect();
                if !h.complete() && left.is_empty() {
                    left.push(format!(
                        "{} blobs have no readable copy here or in {}",
                        h.missing.iter().filter(|m| m.referenced).count(),
                        def.name
                    ));
                }
            }
            Some(def) => left.push(format!(
                "sibling {} ({}) is not present to heal from",
                def.name,
                def.path.display()
            )),
            None => {}
        }
    }
    // What a structural error was (a lost tree, a damaged index) parity and the sibling may
    // not say: a final structural check tells.
    if left.is_empty() {
        let after = check(
            repo,
            &CheckOptions {
                now_ns: host.now_ns(),
                ..CheckOptions::default()
            },
        )
        .map_err(step("scrub: checking after healing"))?;
        left = after.errors;
    }
    s.unhealed = left;
    host.event(PlanEvent::Scrub(&s));
    Ok(s)
}
