//! The files that turn a site's canary on and off. The site a `proxy-switch` renders in socket mode tests them
//! at each request (see `templates/nginx-site.conf.hbs`), so neither needs a reload, and no connection, in
//! flight or kept alive, is dropped:
//! - `<root>/run/canary.sock`, a link to the new instance's socket (the `_canary` upstream);
//! - `<root>/run/canary/on`: the requests of this site are logged by side (all to the `_stable` upstream);
//! - `<root>/run/canary/sticky`: a request's bucket is drawn over the client's address and user agent instead
//!   of the request id;
//! - `<root>/run/canary/split/<bucket>`: the requests of that bucket (`00`-`99`) go to the canary.
//!
//! On: the link, `on` and `sticky`, then the buckets; off: the buckets first, then the flags (the link stays).
//! Every request always has a side that answers.

use std::path::Path;

use zdd_engine::host::Command;
use zdd_engine::kind::{StepError, UndoCtx};

use crate::common::path_text;
use crate::proxy::nginx::Nginx;

/// `weight` of the 100 buckets, drawn by `seed` (the release's): another release's canary gets other ones, so
/// with `sticky` the same visitors are not the canary of every release.
pub fn buckets(weight: u8, seed: &str) -> Vec<String> {
    // FNV-1a of the seed, then a xorshift shuffle: deterministic, and plenty for spreading 100 buckets.
    let mut state =
        seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut all: Vec<u8> = (0..100).collect();
    for i in (1..all.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bound = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
        let j = usize::try_from(state % bound).unwrap_or(0);
        all.swap(i, j);
    }
    let mut chosen: Vec<String> = all.iter().take(usize::from(weight.min(100))).map(|b| format!("{b:02}")).collect();
    chosen.sort();
    chosen
}

/// Turn the canary on: `weight`% of the site's requests (chosen by `seed`) go to `socket`.
pub async fn start(
    ctx: &UndoCtx,
    ngx: &Nginx,
    socket: &Path,
    weight: u8,
    sticky: bool,
    seed: &str,
) -> Result<(), StepError> {
    let dir = ngx.canary_dir();
    // Whatever an earlier canary left (a zdd killed mid-window) goes first.
    stop(ctx, ngx).await?;
    ctx.host.create_dir_all(&dir.join("split")).await?;
    ctx.host.swap_symlink(&ngx.canary_link(), socket).await?;
    // The analysis reads the log whole: emptied in place, as Nginx keeps it open (appending).
    ctx.exec_ok(&Command::new("truncate").args(["-s", "0"]).arg(path_text(&ngx.canary_log()))).await?;
    if sticky {
        ctx.host.write_file(&dir.join("sticky"), b"on\n", 0o644).await?;
    }
    ctx.host.write_file(&dir.join("on"), b"on\n", 0o644).await?;
    // One command for every bucket file (over SSH, one session rather than one per file).
    let files = buckets(weight, seed).into_iter().map(|b| path_text(&dir.join("split").join(b)));
    ctx.exec_ok(&Command::new("touch").args(files)).await?;
    Ok(())
}

/// Turn the canary off: every request goes through the live link again. Repeatable. The link stays: a request
/// Nginx sent to the canary a moment before still connects through it (the next canary swaps it).
pub async fn stop(ctx: &UndoCtx, ngx: &Nginx) -> Result<(), StepError> {
    let dir = ngx.canary_dir();
    ctx.host.remove_all(&dir.join("split")).await?;
    ctx.host.remove_all(&dir.join("on")).await?;
    ctx.host.remove_all(&dir.join("sticky")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_the_weight_and_depend_on_the_release() {
        let ten = buckets(10, "20261204-031500");
        assert_eq!(ten.len(), 10);
        assert!(ten.iter().all(|b| b.len() == 2 && b.parse::<u8>().is_ok_and(|n| n < 100)));
        assert_eq!(ten, buckets(10, "20261204-031500"), "the same release draws the same buckets");
        assert_ne!(ten, buckets(10, "20261204-041500"));
        assert_eq!(buckets(100, "x").len(), 100);
        let mut unique = buckets(50, "y");
        unique.dedup();
        assert_eq!(unique.len(), 50);
    }
}
