//! Simulated time for the switchboard: a driver that owns the clock (an `Instant` it moves by
//! hand) and plays the media driver (prompts end after their real length, a stopped leg
//! reports at once). Tests run minutes of calls in microseconds with it, and the same seed
//! and inputs give the same outputs.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use super::{Input, Output, Switchboard};
use crate::media::leg::{LegId, MediaCommand, MediaEvent, RtpReceived};

pub struct Simulator {
    pub switchboard: Switchboard,
    /// The simulation's start; `now - t0` is how long it has run.
    pub t0: Instant,
    pub now: Instant,
    /// Prompts end after their length (`PlaybackFinished`); off, they never end by themselves.
    finish_prompts: bool,
    /// When each leg's queued prompts end, and the generation of the last Play.
    playing: HashMap<LegId, (Instant, u64)>,
    outputs: VecDeque<(Instant, Output)>,
}

impl Simulator {
    /// Starts the clock at `t0`, which is `wall` on the wall clock (what opening hours see).
    pub fn new(
        mut switchboard: Switchboard,
        t0: Instant,
        wall: SystemTime,
        finish_prompts: bool,
    ) -> Self {
        switchboard.handle_input(t0, Input::WallClock(wall));
        Self {
            switchboard,
            t0,
            now: t0,
            finish_prompts,
            playing: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// How long the simulation has run.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// One input at the current instant; its outputs wait in `poll_output`.
    pub fn input(&mut self, input: Input<'_>) {
        self.switchboard.handle_input(self.now, input);
        self.collect();
    }

    /// What the switchboard produced, with the instant it did.
    pub fn poll_output(&mut self) -> Option<(Instant, Output)> {
        self.outputs.pop_front()
    }

    /// The next instant something happens by itself: a timer, or the end of a prompt.
    pub fn next_event(&self) -> Option<Instant> {
        let playback = self.playing.values().map(|(end, _)| *end).min();
        [self.switchboard.poll_timeout(), playback]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the clock to `at` (never backwards) and fires the timers and prompt ends due
    /// then, earliest first.
    pub fn run_until(&mut self, at: Instant) {
        while let Some(next) = self.next_event().filter(|next| *next <= at) {
            self.now = self.now.max(next);
            self.fire_due();
        }
        self.now = self.now.max(at);
    }

    /// Fires what is due now: timers first, then one prompt end.
    pub fn fire_due(&mut self) {
        if self
            .switchboard
            .poll_timeout()
            .is_some_and(|at| at <= self.now)
        {
            return self.input(Input::Timeout);
        }
        let finished = self
            .playing
            .iter()
            .filter(|(_, (end, _))| *end <= self.now)
            .map(|(leg, (end, generation))| (*end, *leg, *generation))
            .min();
        if let Some((_, leg, generation)) = finished {
            self.playing.remove(&leg);
            self.input(Input::Media(MediaEvent::PlaybackFinished {
                leg,
                generation,
            }));
        }
    }

    /// Takes the switchboard's outputs, answering media commands as the driver would (also
    /// after a call made on the switchboard directly, outside `input`).
    pub fn collect(&mut self) {
        let mut stopped = Vec::new();
        while let Some(output) = self.switchboard.poll_output() {
            if let Output::Media(command) = &output {
                match command {
                    MediaCommand::Play {
                        leg,
                        prompts,
                        generation,
                    } if self.finish_prompts => {
                        let length: Duration = prompts.iter().map(|p| p.duration()).sum();
                        let from = match self.playing.get(leg) {
                            Some((end, _)) if *end > self.now => *end,
                            _ => self.now,
                        };
                        self.playing.insert(*leg, (from + length, *generation));
                    }
                    MediaCommand::StopPlayback { leg } => {
                        self.playing.remove(leg);
                    }
                    MediaCommand::Stop { leg } => {
                        self.playing.remove(leg);
                        stopped.push(*leg);
                    }
                    _ => {}
                }
            }
            self.outputs.push_back((self.now, output));
        }
        for leg in stopped {
            let rtp = RtpReceived::default();
            self.input(Input::Media(MediaEvent::Stopped { leg, rtp }));
        }
    }
}
