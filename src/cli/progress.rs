//! How the command line shows a training run: progress bars on a terminal (feature
//! `progress`), otherwise a plain line every 30 seconds, so that a log file, `nohup` or CI sees
//! progress during an epoch too.
use crate::train::EpochMetrics;
use crate::train::{epoch_line, resume_line, PlainProgress, RunStart, StepReport, TrainObserver};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

/// Seconds between two plain progress lines when standard error is not a terminal.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(30);

/// The command line's observer: bars on a terminal, plain lines elsewhere.
pub enum CliProgress {
    /// Progress bars (standard error is a terminal).
    Bars(Bars),
    /// Plain lines to standard error at [`PLAIN_INTERVAL`].
    Plain(PlainProgress<std::io::Stderr>),
}

impl CliProgress {
    /// Bars if standard error is a terminal, else plain lines.
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bars(Bars::default())
        } else {
            Self::Plain(PlainProgress::new(std::io::stderr(), PLAIN_INTERVAL))
        }
    }

    fn inner(&mut self) -> &mut dyn TrainObserver {
        match self {
            Self::Bars(b) => b,
            Self::Plain(p) => p,
        }
    }
}

impl TrainObserver for CliProgress {
    fn started(&mut self, start: &RunStart) {
        self.inner().started(start)
    }
    fn note(&mut self, message: &str) {
        self.inner().note(message)
    }
    fn step(&mut self, step: &StepReport) {
        self.inner().step(step)
    }
    fn epoch(&mut self, metrics: &EpochMetrics, best: bool) {
        self.inner().epoch(metrics, best)
    }
    fn checkpoint(&mut self, dir: &Path) {
        self.inner().checkpoint(dir)
    }
    fn finished(&mut self) {
        self.inner().finished()
    }
}

/// An epochs bar and a bar for the current epoch's steps.
#[derive(Default)]
pub struct Bars {
    multi: Option<MultiProgress>,
    epochs: Option<ProgressBar>,
    steps: Option<ProgressBar>,
}

impl Bars {
    fn print(&self, line: &str) {
        match &self.multi {
            Some(multi) => multi.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl TrainObserver for Bars {
    fn started(&mut self, start: &RunStart) {
        if let Some(line) = resume_line(start) {
            eprintln!("{line}");
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let epochs = multi.add(ProgressBar::new(start.epochs as u64));
        epochs.set_style(
            ProgressStyle::with_template("epochs {bar:30} {pos}/{len} [{elapsed} < {eta}] {msg}")
                .expect("template"),
        );
        epochs.set_position(start.epochs_done as u64);
        self.multi = Some(multi);
        self.epochs = Some(epochs);
    }
    fn note(&mut self, message: &str) {
        self.print(&format!("note: {message}"));
    }
    fn step(&mut self, step: &StepReport) {
        let Some(multi) = &self.multi else { return };
        let bar = self.steps.get_or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(step.steps_per_epoch as u64));
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} {bar:30} {pos}/{len} [{elapsed} < {eta}] {msg}",
                )
                .expect("template"),
            );
            bar.set_prefix(step.epoch.to_string());
            bar
        });
        bar.set_position(step.epoch_step as u64);
        bar.set_message(format!(
            "train bpd {:.3} | {:.0} img/s",
            step.epoch_bpd, step.images_per_sec
        ));
    }
    fn epoch(&mut self, metrics: &EpochMetrics, best: bool) {
        if let Some(bar) = self.steps.take() {
            bar.finish_and_clear();
        }
        if let Some(epochs) = &self.epochs {
            epochs.set_position(metrics.epoch as u64);
            epochs.set_message(format!("val bpd {:.3}", metrics.val_bpd));
        }
        self.print(&epoch_line(metrics, best));
    }
    fn finished(&mut self) {
        if let Some(bar) = self.steps.take() {
            bar.abandon();
        }
        if let Some(epochs) = self.epochs.take() {
            epochs.abandon();
        }
    }
}
