//! `zdd plan`: the dry-run preview (variables, parallel groups, commands, file diffs, checks, rollback).
