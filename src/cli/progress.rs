//! Progress output for long waits (sync, unmount, fsck): a bar on a terminal,
//! nothing otherwise, so scripts and logs stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A byte-count progress bar shown on stderr when it is a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar labelled `message`, hidden unless stderr is a terminal.
    pub fn new(message: &'static str) -> Self {
        Self::with_template(
            message,
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
    }

    /// A bar counting objects (`done`/`total` are counts, not bytes).
    pub fn counting(message: &'static str) -> Self {
        Self::with_template(message, "{msg} [{bar:30}] {pos}/{len} objects ({eta})")
    }

    fn with_template(message: &'static str, template: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(message);
            bar
        });
        Self { bar }
    }

    /// Records that `done` of `total` bytes are committed.
    pub fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done.min(total));
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
