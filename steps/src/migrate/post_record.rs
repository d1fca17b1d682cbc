//! What a post-deploy phase applied, kept in its release (`.zdd-migrate-post-<alias>.json`), so that a later
//! deploy of an older release (a rollback) can tell that the database lacks what those migrations removed,
//! which the older code may still use. Django's `django_migrations` says only that a migration the older
//! release does not ship was applied; this says that it was a contract one, and what it removed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zdd_engine::host::Host;

use crate::fingerprint::read_record;
use crate::manage::release_dir;

/// One release's post-deploy migrations.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// `app.name`, in apply order.
    pub applied: Vec<String>,
    /// What they removed (`table.column`, `table t`), for the refusal's message.
    #[serde(default)]
    pub removes: Vec<String>,
}

pub fn file(release_dir: &Path, alias: &str) -> PathBuf {
    release_dir.join(format!(".zdd-migrate-post-{alias}.json"))
}

/// Every release's record under `root` but `except`'s, newest release id last.
async fn all(host: &dyn Host, root: &Path, alias: &str, except: Option<&str>) -> Vec<(String, Record)> {
    let mut releases = host.list_dir(&root.join("releases")).await.unwrap_or_default();
    releases.sort();
    let mut found = Vec::new();
    for release in releases.into_iter().filter(|r| Some(r.as_str()) != except) {
        if let Some(record) = read_record::<Record>(host, &file(&release_dir(root, &release), alias)).await {
            found.push((release, record));
        }
    }
    found
}

/// Copy every other release's records into `release`'s, so that they outlive the releases `keep` prunes: the
/// newest release always holds all of them. Returns every record, this release's (merged) first, so that a
/// lookup from the end names the release that applied a migration before this one's copy of it; and why this
/// release's could not be written, if it could not.
pub async fn carry_forward(
    host: &dyn Host,
    root: &Path,
    alias: &str,
    release: &str,
) -> (Vec<(String, Record)>, Option<String>) {
    let others = all(host, root, alias, Some(release)).await;
    let path = file(&release_dir(root, release), alias);
    let own: Record = read_record(host, &path).await.unwrap_or_default();
    let merged = merge(&own, others.iter().map(|(_, r)| r));
    let written = if merged == own {
        None
    } else {
        match serde_json::to_vec_pretty(&merged) {
            Ok(json) => host.write_file(&path, &json, 0o644).await.err().map(|e| format!("{}: {e}", path.display())),
            Err(e) => Some(e.to_string()),
        }
    };
    let mut records = vec![(release.to_owned(), merged)];
    records.extend(others);
    (records, written)
}

/// `own` with what `others` hold that it does not, in order, without repeats.
pub fn merge<'a>(own: &Record, others: impl Iterator<Item = &'a Record>) -> Record {
    let mut merged = own.clone();
    for other in others {
        for m in &other.applied {
            if !merged.applied.contains(m) {
                merged.applied.push(m.clone());
            }
        }
        for r in &other.removes {
            if !merged.removes.contains(r) {
                merged.removes.push(r.clone());
            }
        }
    }
    merged
}

/// A migration the database has, this release lacks, and a post phase applied: the release that applied it,
/// and what the migrations it applied removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub migration: String,
    pub applied_by: String,
    pub removes: Vec<String>,
}

/// Of `not_on_disk` (applied, absent from this release), those a post phase applied, except `allow`ed ones.
pub fn missing(records: &[(String, Record)], not_on_disk: &[String], allow: &[String]) -> Vec<Missing> {
    not_on_disk
        .iter()
        .filter(|m| !allow.contains(m))
        .filter_map(|m| {
            let (release, record) = records.iter().rev().find(|(_, r)| r.applied.contains(m))?;
            Some(Missing { migration: m.clone(), applied_by: release.clone(), removes: record.removes.clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_migrations_a_post_phase_applied_count_and_allow_lets_one_through() {
        let records = vec![(
            "r2".to_owned(),
            Record { applied: vec!["shop.0003_remove_sku".into()], removes: vec!["shop_product.sku".into()] },
        )];
        let not_on_disk = ["shop.0002_add_code".to_owned(), "shop.0003_remove_sku".to_owned()];
        let found = missing(&records, &not_on_disk, &[]);
        assert_eq!(
            found,
            vec![Missing {
                migration: "shop.0003_remove_sku".into(),
                applied_by: "r2".into(),
                removes: vec!["shop_product.sku".into()]
            }]
        );
        assert!(missing(&records, &not_on_disk, &["shop.0003_remove_sku".into()]).is_empty());
    }

    #[test]
    fn carrying_forward_keeps_order_and_drops_repeats() {
        let own = Record { applied: vec!["a.0003".into()], removes: vec!["a_t.x".into()] };
        let older = Record { applied: vec!["a.0002".into(), "a.0003".into()], removes: vec!["a_t.x".into()] };
        let merged = merge(&own, [&older].into_iter());
        assert_eq!(merged.applied, vec!["a.0003".to_owned(), "a.0002".to_owned()]);
        assert_eq!(merged.removes, vec!["a_t.x".to_owned()]);
    }
}
