//! What the migrate gate learns from Django, in one Python process (one Django start instead of a
//! `sqlmigrate` per migration): the database vendor, the unapplied migrations in the order `migrate` would apply
//! them (`migrate --plan`), each one's SQL exactly as `sqlmigrate` prints it, which of its operations cannot be
//! reversed, the tables the database has now, and on SQLite the current schema (to tell what a table rebuild
//! really changes). For each migration it also says whether the live release ships the very same file (its code
//! already expects that migration: it is not new), and which installed distribution ships it.

use serde::Deserialize;

/// The script run with the release's Python (`python -c`), printing one marked JSON line.
pub const SCRIPT: &str = r#"
import hashlib, importlib.metadata, json, os, sys
import django
django.setup()
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.operations.models import ModelOperation, RenameModel
alias = sys.argv[1] if len(sys.argv) > 1 else "default"
live_dir = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
release_dir = os.path.realpath(os.getcwd())
connection = connections[alias]
executor = MigrationExecutor(connection)
plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
out = {"vendor": connection.vendor, "schema": [], "tables": sorted(connection.introspection.table_names()),
       "migrations": []}
if connection.vendor == "sqlite":
    with connection.cursor() as cursor:
        cursor.execute("SELECT sql FROM sqlite_master WHERE type IN ('table', 'index') AND sql IS NOT NULL")
        out["schema"] = [row[0] for row in cursor.fetchall()]
distributions = importlib.metadata.packages_distributions()

def digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None

def origin(migration):
    """The migration's file (relative to the release if inside it), whether the live release has the same file,
    and the distribution that ships it."""
    module = sys.modules.get(type(migration).__module__)
    path = os.path.realpath(getattr(module, "__file__", None) or "")
    relative = os.path.relpath(path, release_dir) if path else None
    inside = relative is not None and not relative.startswith("..")
    in_live = None
    if inside and live_dir:
        in_live = digest(path) is not None and digest(os.path.join(live_dir, relative)) == digest(path)
    package = None
    top = type(migration).__module__.split(".")[0]
    for dist in distributions.get(top, [])[:1]:
        package = "%s %s" % (dist, importlib.metadata.version(dist))
    return (relative if inside else path), in_live, package

def touched(migration):
    """The tables the migration's operations change, or None if one of them is not about a model (RunSQL)."""
    state = executor.loader.project_state((migration.app_label, migration.name), at_end=False)
    tables = []
    def visit(op):
        inner = getattr(op, "database_operations", None)
        if inner is not None:
            return all(visit(o) for o in inner)
        if hasattr(op, "model_name"):
            model = op.model_name
        elif isinstance(op, RenameModel):
            model = op.old_name
        elif isinstance(op, ModelOperation):
            model = op.name
        else:
            return False
        try:
            tables.append(state.apps.get_model(migration.app_label, model)._meta.db_table)
        except LookupError:
            tables.append("%s_%s" % (migration.app_label, model.lower()))
        return True
    return sorted(set(tables)) if all(visit(op) for op in migration.operations) else None

def marker(migration):
    """The deploy phase the project marked the migration with: django-syzygy's `stage`
    (Stage.PRE_DEPLOY / POST_DEPLOY), django-safemigrate's `safe` (Safe.before_deploy / after_deploy / always,
    called or not, or the old True / False)."""
    stage = getattr(migration, "stage", None)
    if stage is not None:
        text = ("%s %s" % (stage, getattr(stage, "value", ""))).lower()
        if "post" in text:
            return "post"
        if "pre" in text:
            return "pre"
    safe = getattr(migration, "safe", None)
    if safe is True:
        return "pre"
    if safe is False:
        return "post"
    if safe is not None:
        text = " ".join(str(x) for x in (safe, getattr(safe, "value", ""), getattr(safe, "safe", ""),
                                         getattr(safe, "when", ""))).lower()
        if "after" in text:
            return "post"
        if "before" in text or "always" in text:
            return "pre"
    return None

from django.apps import apps as current_apps
from django.db.migrations.operations import AlterField, DeleteModel, RemoveField
from django.db.models import NOT_PROVIDED
current_columns = set()
for model in current_apps.get_models(include_auto_created=True):
    try:
        current_columns.add((model._meta.db_table, None))
        for field in model._meta.local_fields:
            current_columns.add((model._meta.db_table, field.column))
        for field in model._meta.local_many_to_many:
            current_columns.add((field.m2m_db_table(), None))
    except Exception:
        pass

def contract(migration):
    """What its RemoveField and DeleteModel operations remove (the table, the column or None for the whole
    table, whether the column is NOT NULL without a database default: `tight`, inserts that omit it fail while
    it exists; and whether this release's models still use it), and whether every one of its operations is a
    contract one (a removal, or an AlterField from NULL to NOT NULL): only then may it wait for the post phase."""
    ops = migration.operations
    if not ops or not all(isinstance(op, (RemoveField, DeleteModel, AlterField)) for op in ops):
        return [], False
    state = executor.loader.project_state((migration.app_label, migration.name), at_end=False)
    found, only_contract = [], True
    for op in ops:
        if isinstance(op, DeleteModel):
            model = state.apps.get_model(migration.app_label, op.name)
            table, column, tight = model._meta.db_table, None, False
        else:
            model = state.apps.get_model(migration.app_label, op.model_name)
            field = model._meta.get_field(op.name)
            if isinstance(op, AlterField):
                only_contract = only_contract and field.null and not op.field.null
                continue
            if field.many_to_many:
                # Django drops only a through table it made itself.
                if not field.remote_field.through._meta.auto_created:
                    continue
                table, column, tight = field.m2m_db_table(), None, False
            else:
                table, column = model._meta.db_table, field.column
                tight = not field.null and getattr(field, "db_default", NOT_PROVIDED) is NOT_PROVIDED
        found.append({"table": table, "column": column, "tight": tight,
                      "used": (table, column) in current_columns})
    return found, only_contract

pending = set((m.app_label, m.name) for m, _ in plan)
graph = executor.loader.graph
for migration, backwards in plan:
    file, in_live, package = origin(migration)
    key = (migration.app_label, migration.name)
    entry = {"app": migration.app_label, "name": migration.name, "sql": "", "error": None,
             "irreversible": [op.describe() for op in migration.operations if not op.reversible],
             "file": file, "in_live": in_live, "package": package, "tables": None,
             "marker": marker(migration),
             "depends": sorted("%s.%s" % p.key for p in graph.node_map[key].parents if p.key in pending),
             "removes": [], "contract_only": False}
    # Only judged with a release live (a first deploy applies everything): rendering the states costs time.
    if live_dir:
        try:
            entry["removes"], entry["contract_only"] = contract(migration)
        except Exception:
            pass
    try:
        entry["sql"] = "\n".join(executor.loader.collect_sql([(migration, False)]))
    except Exception as e:
        entry["error"] = "%s: %s" % (type(e).__name__, e)
        try:
            entry["tables"] = touched(migration)
        except Exception:
            pass
    out["migrations"].append(entry)
# Applied migrations this release does not ship, but not those a squashed migration on disk replaces, nor those
# of apps this release no longer has (their code is gone with them).
applied = set(executor.loader.applied_migrations)
disk = executor.loader.disk_migrations
replaced = set(r for m in disk.values() for r in (getattr(m, "replaces", None) or []))
loaded = set(config.label for config in current_apps.get_app_configs())
out["applied_not_on_disk"] = sorted("%s.%s" % k for k in applied - set(disk) - replaced if k[0] in loaded)
print("ZDD-MIGRATE-GATE " + json.dumps(out))
"#;

/// The marker in front of the script's JSON line.
pub const MARKER: &str = "ZDD-MIGRATE-GATE ";

#[derive(Debug, Clone, Deserialize)]
pub struct Inspection {
    pub vendor: String,
    /// SQLite: the `CREATE TABLE` and `CREATE INDEX` statements of `sqlite_master`.
    pub schema: Vec<String>,
    /// The tables in the database before anything is applied (`None` in recordings older than this field).
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    pub migrations: Vec<Pending>,
    /// Migrations `django_migrations` lists that this release does not have (`app.name`): a newer release
    /// applied them (a rollback, or a deploy of an older release).
    #[serde(default)]
    pub applied_not_on_disk: Vec<String>,
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
    /// The migration's file, relative to the release when inside it (a venv inside the release included).
    #[serde(default)]
    pub file: Option<String>,
    /// Does the live release have a byte-identical file at the same place? `None`: nothing to compare with (no
    /// live release, or a file outside the release).
    #[serde(default)]
    pub in_live: Option<bool>,
    /// The installed distribution that ships it, with its version (`wagtail 8.0.1`); `None` for the project's own.
    #[serde(default)]
    pub package: Option<String>,
    /// When its SQL could not be generated: the tables its operations change (`None`: not only model operations).
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// The phase the project marked it with (django-syzygy's `stage`, django-safemigrate's `safe`).
    #[serde(default)]
    pub marker: Option<Marker>,
    /// The unapplied migrations it depends on directly (`app.name`).
    #[serde(default)]
    pub depends: Vec<String>,
    /// What its `RemoveField` and `DeleteModel` operations remove.
    #[serde(default)]
    pub removes: Vec<Removal>,
    /// Every operation is a contract one (a removal, or an `AlterField` from NULL to NOT NULL): it may wait for
    /// the post phase. `false` when unknown (nothing live, or the states could not be rendered).
    #[serde(default)]
    pub contract_only: bool,
}

/// A deploy phase a project marked a migration with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Marker {
    Pre,
    Post,
}

/// A column or table a migration removes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Removal {
    pub table: String,
    /// `None`: the whole table.
    pub column: Option<String>,
    /// NOT NULL without a database default: while the column exists, inserts that omit it fail.
    #[serde(default)]
    pub tight: bool,
    /// This release's models still use it.
    #[serde(default)]
    pub used: bool,
}

impl Removal {
    pub fn name(&self) -> String {
        match &self.column {
            Some(c) => format!("{}.{c}", self.table),
            None => format!("table {}", self.table),
        }
    }
}

impl Pending {
    pub fn label(&self) -> String {
        format!("{}.{}", self.app, self.name)
    }

    /// The live release ships this same migration, so its code already expects the schema after it.
    pub fn known_to_live(&self) -> bool {
        self.in_live == Some(true)
    }

    /// Does it run Python (`RunPython`), which the gate cannot read? Django writes no SQL for it, only a comment.
    pub fn runs_python(&self) -> bool {
        self.sql.lines().any(|l| l.trim_start_matches(['-', ' ']).starts_with("Raw Python operation"))
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
