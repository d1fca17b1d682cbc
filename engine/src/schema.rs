//! What a step kind accepts: its fields, their types and defaults, and what kind of effect it has.
//!
//! Kinds declare this as static data so that the validator checks every kind the same way, "did you mean"
//! suggestions know every name, and the book's reference and `zdd kinds` are generated from one source.

/// The type of a field's argument or of a property, checked after variables are interpolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Any string.
    String,
    /// A filesystem path (absolute, or relative to the plan file's directory).
    Path,
    /// A duration like `100ms`, `30s`, `2m`, `1h`.
    Duration,
    /// A TCP port, 1-65535.
    Port,
    /// An `http://` or `https://` URL, or an `http+unix://` URL for a unix socket.
    Url,
    /// A whole number.
    Int,
    /// `#true` or `#false`.
    Bool,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// One or more strings (all of the node's arguments).
    Strings,
    /// One word interpolated into an Nginx or systemd file (or a header): no whitespace, control character,
    /// `;`, `{`, `}`, `#`, quote, backslash, `$` or backtick.
    ConfigWord,
    /// Like [`ValueType::ConfigWord`], but spaces may separate several words (Nginx `listen`, `server_name`).
    ConfigWords,
    /// A [`ValueType::Path`] that lands in an Nginx or systemd file: also a [`ValueType::ConfigWord`].
    ConfigPath,
    /// A plain name that also names files and units: letters, digits, `-`, `_`, `.`, not starting with `.`
    /// or `-` (so it cannot climb out of a directory or pass for an option).
    Name,
    /// A relative path that stays inside the directory it is joined to (no `..`, not absolute): what zdd
    /// creates there, its undo removes.
    SubPath,
    /// The name of another step of the plan, of one of these kinds (`service "web"` in a health gate). Checked
    /// like `needs`: the step must exist (with a "did you mean"), be of one of the kinds, and the referring step
    /// is ordered after it (the reference adds a `needs` edge).
    StepRef(&'static [&'static str]),
    /// The name of another step whose settings this one reads (`proxy-switch "switch"` in a `maintenance` step),
    /// checked as [`ValueType::StepRef`] is, but adding no `needs` edge: the step may run before the one it names.
    SettingsRef(&'static [&'static str]),
    /// A shell script the plan wrote (run with `/bin/sh -c`): the values of the variables interpolated into it
    /// are checked, so a `--var` value cannot add a command.
    Shell,
}

/// A property of a field node, like `status=200` in `get "/" status=200`.
#[derive(Debug, Clone, Copy)]
pub struct PropSpec {
    pub name: &'static str,
    pub ty: ValueType,
    pub required: bool,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// A child node of a step, like `path "/srv/app"`.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    /// Type of the node's argument (`Strings` takes all arguments; `Bool` may be written with no argument).
    pub ty: ValueType,
    pub required: bool,
    /// May the node appear more than once (`get "/a"`, `get "/b"`)?
    pub repeated: bool,
    pub default: Option<&'static str>,
    pub props: &'static [PropSpec],
    pub doc: &'static str,
}

impl FieldSpec {
    /// A single, optional field with no properties: the common case.
    pub const fn new(name: &'static str, ty: ValueType, doc: &'static str) -> Self {
        Self { name, ty, required: false, repeated: false, default: None, props: &[], doc }
    }

    #[must_use]
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    #[must_use]
    pub const fn repeated(mut self) -> Self {
        self.repeated = true;
        self
    }

    #[must_use]
    pub const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }

    #[must_use]
    pub const fn props(mut self, props: &'static [PropSpec]) -> Self {
        self.props = props;
        self
    }
}

/// What running a step does to the world, which decides how the rollback treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Changes nothing (a check): nothing to undo.
    ReadOnly,
    /// Changes state and knows how to undo it.
    Reversible,
    /// Changes state that is not undone (a schema migration): the preview says so.
    ForwardOnly,
}

/// Everything a kind declares about itself.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub name: &'static str,
    /// One line: what the kind does.
    pub summary: &'static str,
    pub fields: &'static [FieldSpec],
    /// The effect of the kind in general; a step may differ (an `exec` with an `undo` is reversible).
    pub effect: Effect,
    /// How a run of this kind is undone, in words, for the book and the preview.
    pub undo: &'static str,
}
