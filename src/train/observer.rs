//! Watching and steering a training run from code: [`TrainObserver`] receives the run's events
//! (start, every step, every epoch, every checkpoint) and can stop it cleanly. Two observers
//! ship here: [`EpochLog`] (one line per epoch on standard error, what [`train`](super::train)
//! uses) and [`PlainProgress`] (a progress line at a steady interval, for logs and terminals
//! without progress bars). The command line adds progress bars on a terminal.
use super::EpochMetrics;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a run starts: fresh, or resumed from a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct RunStart {
    /// Epochs already completed (0 for a fresh run).
    pub epochs_done: usize,
    /// Steps of the current epoch already done (a run resumed mid-epoch).
    pub epoch_step: usize,
    /// Optimizer steps taken so far, over all epochs.
    pub step: u64,
    /// Epochs to reach.
    pub epochs: usize,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// The checkpoint resumed from, if any.
    pub resumed_from: Option<PathBuf>,
}

/// One optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The epoch this step belongs to, from 1.
    pub epoch: usize,
    /// Steps of this epoch done, including this one (1..=`steps_per_epoch`).
    pub epoch_step: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Epochs to reach.
    pub epochs: usize,
    /// The batch's loss in bits per dimension (NaN or infinite when the step was skipped).
    pub bpd: f64,
    /// Whether the update was skipped for a non-finite loss or gradient.
    pub skipped: bool,
    /// The learning rate of this step (the epoch's rate, times the warmup factor).
    pub lr: f64,
    /// Mean training bpd of the epoch's applied steps so far (NaN if none).
    pub epoch_bpd: f64,
    /// Training images per second in this epoch so far.
    pub images_per_sec: f64,
    /// Seconds spent in this epoch so far (before an interruption included).
    pub epoch_seconds: f64,
}

impl StepReport {
    /// Estimated seconds to the end of the epoch at the epoch's pace so far.
    pub fn epoch_eta_seconds(&self) -> f64 {
        let left = self.steps_per_epoch.saturating_sub(self.epoch_step) as f64;
        self.epoch_seconds / self.epoch_step.max(1) as f64 * left
    }
}

/// Receives a training run's events; every method has a default that does nothing, so an
/// observer implements only what it needs. `()` observes nothing.
///
/// ```
/// use dfdx_flows::train::{StepReport, TrainObserver};
///
/// /// Stops after 100 steps and keeps every loss.
/// struct Losses(Vec<f64>);
/// impl TrainObserver for Losses {
///     fn step(&mut self, step: &StepReport) {
///         self.0.push(step.bpd);
///     }
///     fn should_stop(&mut self) -> bool {
///         self.0.len() >= 100
///     }
/// }
/// ```
pub trait TrainObserver {
    /// Training starts or resumes.
    fn started(&mut self, _start: &RunStart) {}
    /// Something the user should know (e.g. a learning rate that changed on resume).
    fn note(&mut self, _message: &str) {}
    /// An optimizer step is done (applied or skipped).
    fn step(&mut self, _step: &StepReport) {}
    /// An epoch is done and validated; `best` says whether its checkpoint is the new best.
    fn epoch(&mut self, _metrics: &EpochMetrics, _best: bool) {}
    /// A checkpoint was written to `dir`.
    fn checkpoint(&mut self, _dir: &Path) {}
    /// The run ends, normally or with an error.
    fn finished(&mut self) {}
    /// Asked after every step: `true` stops the run cleanly, as Ctrl-C does (a checkpoint,
    /// then [`TrainError::Interrupted`](super::TrainError::Interrupted)).
    fn should_stop(&mut self) -> bool {
        false
    }
}

impl TrainObserver for () {}

impl<T: TrainObserver + ?Sized> TrainObserver for &mut T {
    fn started(&mut self, start: &RunStart) {
        (**self).started(start)
    }
    fn note(&mut self, message: &str) {
        (**self).note(message)
    }
    fn step(&mut self, step: &StepReport) {
        (**self).step(step)
    }
    fn epoch(&mut self, metrics: &EpochMetrics, best: bool) {
        (**self).epoch(metrics, best)
    }
    fn checkpoint(&mut self, dir: &Path) {
        (**self).checkpoint(dir)
    }
    fn finished(&mut self) {
        (**self).finished()
    }
    fn should_stop(&mut self) -> bool {
        (**self).should_stop()
    }
}

/// The line that [`EpochLog`] and [`PlainProgress`] write for an epoch.
pub fn epoch_line(m: &EpochMetrics, best: bool) -> String {
    format!(
        "epoch {}: train bpd {:.4}, val bpd {:.4}, {:.0} s, {:.0} img/s{}",
        m.epoch,
        m.train_bpd,
        m.val_bpd,
        m.seconds,
        m.images_per_sec,
        if best { " (best)" } else { "" }
    )
}

/// The line for a resumed run.
pub fn resume_line(start: &RunStart) -> Option<String> {
    start.resumed_from.as_ref().map(|dir| {
        format!(
            "resuming from epoch {} step {} ({})",
            start.epochs_done,
            start.step,
            dir.display()
        )
    })
}

/// Writes the resume line, notes and one line per epoch to standard error: what
/// [`train`](super::train) shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct EpochLog;

impl TrainObserver for EpochLog {
    fn started(&mut self, start: &RunStart) {
        if let Some(line) = resume_line(start) {
            eprintln!("{line}");
        }
    }
    fn note(&mut self, message: &str) {
        eprintln!("note: {message}");
    }
    fn epoch(&mut self, metrics: &EpochMetrics, best: bool) {
        eprintln!("{}", epoch_line(metrics, best));
    }
}

/// A plain progress line at a steady interval (`epoch 3/200 step 120/390 | train bpd 1.2345 |
/// 101 img/s | epoch ETA 2m41s`), plus the lines of [`EpochLog`], to any writer: for log files,
/// `nohup`, CI, and terminals without progress bars. The first line comes after the first step.
pub struct PlainProgress<W: Write> {
    out: W,
    interval: Duration,
    last: Option<Instant>,
}

impl<W: Write> PlainProgress<W> {
    /// Writes to `out`, a progress line at most every `interval`.
    pub fn new(out: W, interval: Duration) -> Self {
        Self {
            out,
            interval,
            last: None,
        }
    }

    /// The writer back (e.g. a buffer, to read what was written).
    pub fn into_inner(self) -> W {
        self.out
    }

    fn line(&mut self, line: &str) {
        // A log that cannot be written must not stop training.
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}

/// `1h02m`, `2m41s` or `9s`.
pub fn short_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// The progress line of a step.
pub fn step_line(step: &StepReport) -> String {
    format!(
        "epoch {}/{} step {}/{} | train bpd {:.4} | {:.0} img/s | epoch ETA {}",
        step.epoch,
        step.epochs,
        step.epoch_step,
        step.steps_per_epoch,
        step.epoch_bpd,
        step.images_per_sec,
        short_duration(step.epoch_eta_seconds())
    )
}

impl<W: Write> TrainObserver for PlainProgress<W> {
    fn started(&mut self, start: &RunStart) {
        if let Some(line) = resume_line(start) {
            self.line(&line);
        }
    }
    fn note(&mut self, message: &str) {
        self.line(&format!("note: {message}"));
    }
    fn step(&mut self, step: &StepReport) {
        let due = self.last.is_none_or(|t| t.elapsed() >= self.interval);
        if due && step.epoch_step < step.steps_per_epoch {
            self.last = Some(Instant::now());
            self.line(&step_line(step));
        }
    }
    fn epoch(&mut self, metrics: &EpochMetrics, best: bool) {
        self.line(&epoch_line(metrics, best));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(epoch_step: usize) -> StepReport {
        StepReport {
            epoch: 2,
            epoch_step,
            steps_per_epoch: 10,
            epochs: 5,
            bpd: 1.5,
            skipped: false,
            lr: 1e-3,
            epoch_bpd: 1.25,
            images_per_sec: 100.0,
            epoch_seconds: 4.0 * epoch_step as f64,
        }
    }

    #[test]
    fn plain_progress_writes_a_line_per_interval() {
        let mut every_step = PlainProgress::new(Vec::new(), Duration::ZERO);
        for s in 1..=10 {
            every_step.step(&step(s));
        }
        let text = String::from_utf8(every_step.into_inner()).unwrap();
        // The last step of an epoch is followed by the epoch line instead.
        assert_eq!(text.lines().count(), 9, "{text}");
        assert_eq!(
            text.lines().nth(2).unwrap(),
            "epoch 2/5 step 3/10 | train bpd 1.2500 | 100 img/s | epoch ETA 28s"
        );

        let mut rarely = PlainProgress::new(Vec::new(), Duration::from_secs(3600));
        for s in 1..=10 {
            rarely.step(&step(s));
        }
        let text = String::from_utf8(rarely.into_inner()).unwrap();
        assert_eq!(
            text.lines().count(),
            1,
            "only the first step within the hour: {text}"
        );
    }

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(short_duration(9.4), "9s");
        assert_eq!(short_duration(161.0), "2m41s");
        assert_eq!(short_duration(3720.0), "1h02m");
        assert_eq!(short_duration(f64::NAN), "?");
    }
}
