//! Migrations in two phases: which unapplied migrations run before the switch (`pre`, while the old release
//! still serves) and which after `drain-stop` (`post`, when no old code runs), and whether that order holds.
//!
//! A migration is post-deploy when the project marks it so (django-syzygy's `stage`, django-safemigrate's
//! `safe`), or, unmarked, when everything the gate finds in it is a contract operation: dropping a column or a
//! table, or tightening a column to NOT NULL. Those break only the old code, so they wait until it is gone.
//! Everything else is pre-deploy and judged as before. Pure: the inspection and the findings go in, the verdict
//! comes out.

use std::collections::{BTreeMap, BTreeSet};

use super::gate::{Finding, Rule};
use super::inspect::{Marker, Pending, Removal};

/// When a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Before the switch, while the old release serves.
    Pre,
    /// After `drain-stop`: no old code runs.
    Post,
}

impl Phase {
    pub fn word(self) -> &'static str {
        match self {
            Phase::Pre => "pre-deploy",
            Phase::Post => "post-deploy",
        }
    }
}

/// Operations that break only the old code: safe once it has stopped.
pub fn is_contract(rule: Rule) -> bool {
    matches!(rule, Rule::DropTable | Rule::DropColumn | Rule::SetNotNull)
}

/// One migration's phase and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub migration: String,
    pub phase: Phase,
    pub why: String,
}

/// A pre-deploy migration that needs a post-deploy one applied first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfOrder {
    pub pre: String,
    pub post: String,
}

/// The phases of a deploy's unapplied migrations, in apply order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phases {
    pub placed: Vec<Placed>,
    pub out_of_order: Vec<OutOfOrder>,
}

impl Phases {
    pub fn of(&self, migration: &str) -> Option<Phase> {
        self.placed.iter().find(|p| p.migration == migration).map(|p| p.phase)
    }

    pub fn post(&self) -> Vec<&Placed> {
        self.placed.iter().filter(|p| p.phase == Phase::Post).collect()
    }

    /// One line per migration: `catalog.0003_remove_sku: post-deploy (only contract operations: drop-column)`.
    pub fn lines(&self) -> Vec<String> {
        self.placed.iter().map(|p| format!("{}: {} ({})", p.migration, p.phase.word(), p.why)).collect()
    }
}

/// Place each migration (`migrations` in apply order, `findings` the gate's on them).
pub fn classify(migrations: &[Pending], findings: &[Finding]) -> Phases {
    let mut placed = Vec::with_capacity(migrations.len());
    for m in migrations {
        let label = m.label();
        let rules: BTreeSet<Rule> = findings.iter().filter(|f| f.migration == label).map(|f| f.rule).collect();
        let (phase, why) = match m.marker {
            Some(Marker::Post) => (Phase::Post, "marked post-deploy in the migration".to_owned()),
            Some(Marker::Pre) => (Phase::Pre, "marked pre-deploy in the migration".to_owned()),
            None if m.contract_only && !rules.is_empty() && rules.iter().all(|r| is_contract(*r)) => {
                (Phase::Post, format!("only contract operations: {}", codes(&rules)))
            }
            None if rules.is_empty() => (Phase::Pre, "compatible with the old release".to_owned()),
            // A migration that adds (or copies) and removes in one: holding it would run the new code without
            // what it adds; applying it would break the old code. Only splitting it works.
            None if rules.iter().all(|r| is_contract(*r)) => (
                Phase::Pre,
                format!(
                    "contract operations ({}) mixed with others: split the removal into a migration of its own",
                    codes(&rules)
                ),
            ),
            None => (Phase::Pre, format!("not only contract operations: {}", codes(&rules))),
        };
        placed.push(Placed { migration: label, phase, why });
    }
    let out_of_order = out_of_order(migrations, &placed);
    Phases { placed, out_of_order }
}

fn codes(rules: &BTreeSet<Rule>) -> String {
    rules.iter().map(|r| r.code()).collect::<Vec<_>>().join(", ")
}

/// Pre-deploy migrations with a post-deploy one among their unapplied ancestors: the pre phase cannot apply
/// them without applying it.
fn out_of_order(migrations: &[Pending], placed: &[Placed]) -> Vec<OutOfOrder> {
    // The nearest post-deploy ancestor of each migration, in apply order (dependencies come first).
    let mut post_ancestor: BTreeMap<String, String> = BTreeMap::new();
    let mut found = Vec::new();
    for (m, p) in migrations.iter().zip(placed) {
        let inherited = m.depends.iter().find_map(|d| post_ancestor.get(d).cloned());
        if p.phase == Phase::Post {
            post_ancestor.insert(p.migration.clone(), p.migration.clone());
        } else if let Some(post) = inherited {
            found.push(OutOfOrder { pre: p.migration.clone(), post: post.clone() });
            post_ancestor.insert(p.migration.clone(), post);
        }
    }
    found
}

/// The `manage.py migrate <app> <name>` targets that apply every pre-deploy migration and no post-deploy one:
/// in each app, the pre-deploy migrations no other pre-deploy migration of that app depends on. `None` when
/// nothing is held (plain `migrate` does it all).
pub fn pre_targets(migrations: &[Pending], phases: &Phases) -> Option<Vec<(String, String)>> {
    if phases.post().is_empty() {
        return None;
    }
    let pre: Vec<&Pending> = migrations.iter().filter(|m| phases.of(&m.label()) == Some(Phase::Pre)).collect();
    Some(
        pre.iter()
            // A leaf of its app: a later migration of the same app that depends on it applies it anyway.
            .filter(|m| !pre.iter().any(|o| o.app == m.app && o.depends.contains(&m.label())))
            .map(|m| (m.app.clone(), m.name.clone()))
            .collect(),
    )
}

/// What the held post-deploy migrations remove that the new release still inserts into: a NOT NULL column
/// without a database default makes every insert that omits it fail until the post phase drops it.
pub fn tight_while_held<'a>(migrations: &'a [Pending], phases: &Phases) -> Vec<(&'a Pending, &'a Removal)> {
    migrations
        .iter()
        .filter(|m| phases.of(&m.label()) == Some(Phase::Post))
        .flat_map(|m| m.removes.iter().filter(|r| r.tight && !r.used && r.column.is_some()).map(move |r| (m, r)))
        .collect()
}

/// What the migrations remove that this release's own models still use.
pub fn still_used(migrations: &[Pending]) -> Vec<(&Pending, &Removal)> {
    migrations.iter().flat_map(|m| m.removes.iter().filter(|r| r.used).map(move |r| (m, r))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(app: &str, name: &str, depends: &[&str], marker: Option<Marker>) -> Pending {
        Pending {
            app: app.into(),
            name: name.into(),
            sql: String::new(),
            error: None,
            irreversible: vec![],
            file: None,
            in_live: None,
            package: None,
            tables: None,
            marker,
            depends: depends.iter().map(|d| (*d).to_owned()).collect(),
            removes: vec![],
            contract_only: true,
        }
    }

    fn finding(migration: &str, rule: Rule) -> Finding {
        Finding { migration: migration.into(), operation: "op".into(), rule, statement: "SQL".into() }
    }

    #[test]
    fn contract_only_migrations_wait_for_the_post_phase_and_the_rest_run_before() {
        let ms = [
            pending("shop", "0002_add_code", &[], None),
            pending("shop", "0003_remove_sku", &["shop.0002_add_code"], None),
            pending("shop", "0004_index", &[], None),
        ];
        let findings = [
            finding("shop.0003_remove_sku", Rule::DropColumn),
            finding("shop.0004_index", Rule::DropColumn),
            finding("shop.0004_index", Rule::IndexWithoutConcurrently),
        ];
        let phases = classify(&ms, &findings);
        insta::assert_snapshot!(phases.lines().join("\n"), @r"
        shop.0002_add_code: pre-deploy (compatible with the old release)
        shop.0003_remove_sku: post-deploy (only contract operations: drop-column)
        shop.0004_index: pre-deploy (not only contract operations: drop-column, index-without-concurrently)
        ");
    }

    #[test]
    fn a_migration_that_adds_and_removes_is_not_held() {
        let mut mixed = pending("shop", "0003_code_for_sku", &[], None);
        mixed.contract_only = false;
        let phases = classify(&[mixed], &[finding("shop.0003_code_for_sku", Rule::DropColumn)]);
        insta::assert_snapshot!(phases.lines().join("\n"), @"shop.0003_code_for_sku: pre-deploy (contract operations (drop-column) mixed with others: split the removal into a migration of its own)");
    }

    #[test]
    fn a_project_marker_wins_over_the_findings() {
        let ms = [pending("a", "0002", &[], Some(Marker::Post)), pending("a", "0003", &[], Some(Marker::Pre))];
        let phases = classify(&ms, &[finding("a.0003", Rule::DropColumn)]);
        assert_eq!(phases.of("a.0002"), Some(Phase::Post));
        assert_eq!(phases.of("a.0003"), Some(Phase::Pre));
    }

    #[test]
    fn a_pre_deploy_migration_after_a_post_deploy_one_is_out_of_order_even_through_another_app() {
        let ms = [
            pending("a", "0002_drop", &[], None),
            pending("b", "0002_x", &["a.0002_drop"], None),
            pending("c", "0002_y", &["b.0002_x"], None),
        ];
        let phases = classify(&ms, &[finding("a.0002_drop", Rule::DropTable)]);
        assert_eq!(
            phases.out_of_order,
            vec![
                OutOfOrder { pre: "b.0002_x".into(), post: "a.0002_drop".into() },
                OutOfOrder { pre: "c.0002_y".into(), post: "a.0002_drop".into() },
            ]
        );
    }

    #[test]
    fn the_pre_phase_targets_each_apps_last_pre_deploy_migration() {
        let ms = [
            pending("a", "0002", &[], None),
            pending("a", "0003", &["a.0002"], None),
            pending("b", "0002", &["a.0002"], None),
            pending("a", "0004_drop", &["a.0003"], None),
        ];
        let phases = classify(&ms, &[finding("a.0004_drop", Rule::DropColumn)]);
        assert!(phases.out_of_order.is_empty());
        assert_eq!(
            pre_targets(&ms, &phases),
            Some(vec![("a".to_owned(), "0003".to_owned()), ("b".to_owned(), "0002".to_owned())])
        );
        let none_held = classify(&ms[..3], &[]);
        assert_eq!(pre_targets(&ms[..3], &none_held), None);
    }

    #[test]
    fn a_held_drop_of_a_not_null_column_without_default_is_found() {
        let mut drop = pending("a", "0002_drop", &[], None);
        drop.removes = vec![
            Removal { table: "a_t".into(), column: Some("sku".into()), tight: true, used: false },
            Removal { table: "a_t".into(), column: Some("note".into()), tight: false, used: false },
        ];
        let ms = [drop];
        let phases = classify(&ms, &[finding("a.0002_drop", Rule::DropColumn)]);
        let tight: Vec<String> = tight_while_held(&ms, &phases).iter().map(|(_, r)| r.name()).collect();
        assert_eq!(tight, vec!["a_t.sku"]);
    }
}
