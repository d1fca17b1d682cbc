//! What the migrate gate learns from Django, in one Python process (one Django start instead of a
//! `sqlmigrate` per migration): the database vendor, the unapplied migrations in the order `migrate` would apply
//! them (`migrate --plan`), each one's SQL exactly as `sqlmigrate` prints it, which of its operations cannot be
//! reversed, and on SQLite the current schema (to tell what a table rebuild really changes).

use serde::Deserialize;

/// The script run with the release's Python (`python -c`), printing one marked JSON line.
pub const SCRIPT: &str = r#"
import json, sys
import django
django.setup()
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
alias = sys.argv[1] if len(sys.argv) > 1 else "default"
connection = connections[alias]
executor = MigrationExecutor(connection)
plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
out = {"vendor": connection.vendor, "schema": [], "migrations": []}
if connection.vendor == "sqlite":
    with connection.cursor() as cursor:
        cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL")
        out["schema"] = [row[0] for row in cursor.fetchall()]
for migration, backwards in plan:
    entry = {"app": migration.app_label, "name": migration.name, "sql": "", "error": None,
             "irreversible": [op.describe() for op in migration.operations if not op.reversible]}
    try:
        entry["sql"] = "\n".join(executor.loader.collect_sql([(migration, False)]))
    except Exception as e:
        entry["error"] = "%s: %s" % (type(e).__name__, e)
    out["migrations"].append(entry)
print("ZDD-MIGRATE-GATE " + json.dumps(out))
"#;

/// The marker in front of the script's JSON line.
pub const MARKER: &str = "ZDD-MIGRATE-GATE ";

#[derive(Debug, Clone, Deserialize)]
pub struct Inspection {
    pub vendor: String,
    pub schema: Vec<String>,
    pub migrations: Vec<Pending>,
}

/// One unapplied migration.
#[derive(Debug, Clone, Deserialize)]
pub struct Pending {
    pub app: String,
    pub name: String,
    /// `sqlmigrate`'s output: statements, with `-- <operation>` comments before each operation's SQL.
    pub sql: String,
    /// The SQL could not be generated (e.g. a PostgreSQL-only operation on SQLite).
    pub error: Option<String>,
    /// Operations without a reverse (`RunPython` without `reverse_code`, `RunSQL` without `reverse_sql`).
    pub irreversible: Vec<String>,
}

impl Pending {
    pub fn label(&self) -> String {
        format!("{}.{}", self.app, self.name)
    }
}

/// Find and parse the marked line in the script's output.
pub fn parse(stdout: &str) -> Result<Inspection, String> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARKER))
        .ok_or_else(|| "the inspection script printed no result".to_owned())?;
    serde_json::from_str(line).map_err(|e| format!("unreadable inspection result: {e}"))
}
