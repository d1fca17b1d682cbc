//! The gate's rules: what makes a migration unsafe while the old release still runs, why, and the
//! expand/contract way to get the same change. A [`Finding`] is one rule broken by one statement.

/// An operation that is unsafe while the old release still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    DropTable,
    RenameTable,
    DropColumn,
    RenameColumn,
    AlterColumnType,
    SetNotNull,
    AddNotNullColumn,
    AddUnique,
    IndexWithoutConcurrently,
    Irreversible,
    Unanalysable,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::DropTable => "drop-table",
            Rule::RenameTable => "rename-table",
            Rule::DropColumn => "drop-column",
            Rule::RenameColumn => "rename-column",
            Rule::AlterColumnType => "alter-column-type",
            Rule::SetNotNull => "set-not-null",
            Rule::AddNotNullColumn => "add-not-null-column",
            Rule::AddUnique => "add-unique",
            Rule::IndexWithoutConcurrently => "index-without-concurrently",
            Rule::Irreversible => "irreversible",
            Rule::Unanalysable => "unanalysable",
        }
    }

    /// Why the old code breaks.
    pub fn why(self) -> &'static str {
        match self {
            Rule::DropTable => "the old release still queries this table",
            Rule::RenameTable => "the old release still queries the table by its old name",
            Rule::DropColumn => "the old release still selects and inserts this column",
            Rule::RenameColumn => "the old release still uses the column's old name",
            Rule::AlterColumnType => "the old release reads and writes the old type (and the rewrite locks the table)",
            Rule::SetNotNull => "the old release may still write NULL here",
            Rule::AddNotNullColumn => "the old release inserts rows without this column and has no default for it",
            Rule::AddUnique => "the old release may write duplicates (and building the index locks writes)",
            Rule::IndexWithoutConcurrently => "building or dropping the index locks the table against writes",
            Rule::Irreversible => "it cannot be undone if the release must be rolled back",
            Rule::Unanalysable => "the gate could not tell what this statement does",
        }
    }

    /// The expand/contract way to get the same result.
    pub fn fix(self) -> &'static str {
        match self {
            Rule::DropTable | Rule::DropColumn => {
                "contract later: first deploy code that no longer uses it (remove the field from the model), then \
                 drop it in a following release"
            }
            Rule::RenameTable | Rule::RenameColumn => {
                "expand/contract: add the new name, write both and backfill, switch reads in a next release, drop the \
                 old name last (or keep the old column name with `db_column`)"
            }
            Rule::AlterColumnType => {
                "expand/contract: add a new column of the new type, write both and backfill, switch reads, then drop \
                 the old column"
            }
            Rule::SetNotNull => {
                "deploy code that always writes a value and backfill first; add NOT NULL in a later release (on \
                 PostgreSQL via a CHECK constraint added NOT VALID, then validated)"
            }
            Rule::AddNotNullColumn => {
                "add it nullable or with a database default (`db_default=`), backfill, then tighten"
            }
            Rule::AddUnique => {
                "deduplicate and make the code enforce uniqueness first; on PostgreSQL build the index with \
                 AddIndexConcurrently, then attach the constraint in a later release"
            }
            Rule::IndexWithoutConcurrently => {
                "use django.contrib.postgres.operations.AddIndexConcurrently / RemoveIndexConcurrently in a \
                 migration with `atomic = False`"
            }
            Rule::Irreversible => {
                "give RunPython a `reverse_code` (RunPython.noop if nothing needs undoing) and RunSQL a `reverse_sql`"
            }
            Rule::Unanalysable => {
                "review the SQL by hand and allow the migration if it is compatible with the old code"
            }
        }
    }
}

/// One unsafe operation found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// `app.0004_name`.
    pub migration: String,
    /// Django's description of the operation (`Remove field sku from product`).
    pub operation: String,
    pub rule: Rule,
    /// The statement (or detail) that triggered it.
    pub statement: String,
}

impl Finding {
    pub fn describe(&self) -> String {
        format!(
            "{}: {} [{}]\n  {}: {}\n  SQL: {}\n  fix: {}",
            self.migration,
            self.operation,
            self.rule.code(),
            "unsafe while the old release runs",
            self.rule.why(),
            self.statement,
            self.rule.fix()
        )
    }
}
