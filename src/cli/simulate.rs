//! `hotline simulate`: the supervisor's dry run. Walks the real call flow offline with a
//! simulated clock: prompts "play" for their real length, timers run out, and each step is
//! printed with the prompt file, the decision and the final action. `--remembered LANG` is a
//! returning caller whose language the service remembers (`remember_language`).

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context};
use chrono::{NaiveDateTime, TimeZone};

use crate::ivr::menu::MenuFlow;
use crate::ivr::{CallFlow, FlowAction, FlowClock, FlowEvent};
use crate::media::prompts::PromptLibrary;
use crate::routing::Routing;

/// Where the keys come from: the command line, or the terminal line by line.
pub enum Keys {
    Given(Vec<char>),
    Interactive,
}

pub struct Options<'a> {
    pub routing: &'a Path,
    pub prompts: &'a Path,
    pub language: Option<String>,
    /// The caller chose this language on an earlier call: greeted in it, no language menu.
    pub remembered: Option<String>,
    /// Local time in the hotline's time zone, `YYYY-MM-DD HH:MM`.
    pub at: Option<String>,
    pub keys: Keys,
}

/// The keys a telephone can send (RFC 4733 events 0-15).
pub const VALID_KEYS: &str = "0123456789*#ABCD";

/// The caller's keys from the command line; whitespace separates, anything else than
/// [`VALID_KEYS`] is refused.
pub fn parse_keys(words: &[String]) -> anyhow::Result<Vec<char>> {
    words
        .iter()
        .flat_map(|word| word.chars())
        .filter(|key| !key.is_whitespace())
        .map(|key| {
            if VALID_KEYS.contains(key) {
                Ok(key)
            } else {
                Err(anyhow!(
                    "key {key:?} cannot be pressed on a telephone: expected 0-9, *, #, A-D"
                ))
            }
        })
        .collect()
}

/// Guards against flows that never end (they cannot with a checked file, but this is a tool).
const MAX_STEPS: usize = 200;

pub fn run(options: Options) -> anyhow::Result<()> {
    let routing = crate::routing::load(options.routing).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow!(
            "{}\n(run `hotline check` for every problem)",
            lines.join("\n")
        )
    })?;
    let (prompts, _) = PromptLibrary::load(options.prompts);
    if prompts.is_empty() {
        eprintln!(
            "warning: no prompts in {} (setting `prompts`): prompt lengths are unknown",
            options.prompts.display()
        );
    }
    let wall = match &options.at {
        Some(text) => local_time(&routing, text)?,
        None => SystemTime::now(),
    };
    let mut keys: Vec<char> = Vec::new();
    if let Some(language) = &options.language {
        let position = routing
            .hotline
            .languages
            .value
            .iter()
            .position(|l| l.value == *language)
            .ok_or_else(|| anyhow!("language `{language}` is not in [hotline] languages"))?;
        keys.push(char::from_digit(position as u32 + 1, 10).unwrap_or('1'));
    }
    if let Some(remembered) = &options.remembered {
        check_remembered(&routing, remembered, options.language.is_some())?;
    }
    let mut interactive = matches!(options.keys, Keys::Interactive) && options.language.is_none();
    if let Keys::Given(given) = options.keys {
        keys.extend(given);
    }
    let flow =
        MenuFlow::new(Arc::new(routing)).with_remembered_language(options.remembered.as_deref());
    if let Some(remembered) = &options.remembered {
        println!(
            "{}  returning caller: language {remembered} remembered, no language menu",
            stamp(Duration::ZERO)
        );
    }
    let mut simulation = Simulation {
        flow,
        prompts,
        start: Instant::now(),
        elapsed: Duration::ZERO,
        wall,
        playing: None,
        timer: None,
        finished: false,
        reached: None,
    };
    simulation.event(FlowEvent::Started);
    let mut keys = keys.into_iter();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    for _ in 0..MAX_STEPS {
        if simulation.finished {
            break;
        }
        if let Some(length) = simulation.playing.take() {
            simulation.elapsed += length;
            simulation.event(FlowEvent::PlaybackFinished);
            continue;
        }
        let next_key = match keys.next() {
            Some(key) => Some(key),
            None if interactive => match read_key(&mut lines)? {
                Input::Key(key) if !VALID_KEYS.contains(key) => {
                    eprintln!(
                        "key {key:?} cannot be pressed on a telephone: expected 0-9, *, #, A-D"
                    );
                    continue;
                }
                Input::Key(key) => Some(key),
                Input::Silence => None,
                // No more keys: the caller stays silent until the flow ends.
                Input::End => {
                    interactive = false;
                    None
                }
            },
            None => None,
        };
        if let Some(key) = next_key {
            println!("{}  caller presses {key}", stamp(simulation.elapsed));
            simulation.event(FlowEvent::Digit(key));
            continue;
        }
        match simulation.timer.take() {
            Some((id, after)) => {
                simulation.elapsed += after;
                println!(
                    "{}  no key within {}",
                    stamp(simulation.elapsed),
                    seconds(after)
                );
                simulation.event(FlowEvent::Timer(id));
            }
            None => break,
        }
    }
    match &simulation.reached {
        Some((group, at)) => println!(
            "reached group {group} after {} of simulated time",
            seconds(*at)
        ),
        None => println!("reached no group"),
    }
    println!("path: {}", simulation.flow.path_text());
    Ok(())
}

struct Simulation {
    flow: MenuFlow,
    prompts: PromptLibrary,
    start: Instant,
    elapsed: Duration,
    wall: SystemTime,
    /// Length of the prompts queued and not yet heard (None: nothing queued).
    playing: Option<Duration>,
    timer: Option<(u32, Duration)>,
    finished: bool,
    /// The group the caller was handed to (queue or REFER) and when.
    reached: Option<(String, Duration)>,
}

impl Simulation {
    fn event(&mut self, event: FlowEvent) {
        let clock = FlowClock {
            now: self.start + self.elapsed,
            wall: self.wall + self.elapsed,
        };
        for action in self.flow.handle(clock, event) {
            let at = stamp(self.elapsed);
            match action {
                FlowAction::Play(prompts) => {
                    for prompt in prompts {
                        // Each prompt starts when what is queued before it ends.
                        let starts = stamp(self.elapsed + self.playing.unwrap_or_default());
                        let length = match self.prompts.get(&prompt.lang, &prompt.name) {
                            Some(loaded) => {
                                *self.playing.get_or_insert(Duration::ZERO) += loaded.duration();
                                seconds(loaded.duration())
                            }
                            None => {
                                // Still "played", for zero seconds, so the flow goes on.
                                self.playing.get_or_insert(Duration::ZERO);
                                "missing!".to_owned()
                            }
                        };
                        println!(
                            "{starts}  play [{}] {}  ({length})",
                            prompt.lang, prompt.name
                        );
                    }
                }
                FlowAction::StopPlayback => self.playing = None,
                FlowAction::StartTimer { id, after } => {
                    println!("{at}  wait for a key ({})", seconds(after));
                    self.timer = Some((id, after));
                }
                FlowAction::CancelTimer(_) => self.timer = None,
                FlowAction::Transfer { target } => {
                    println!("{at}  TRANSFER (REFER) to {target}");
                    let group = self.flow.summary().group.unwrap_or_default();
                    self.reached = Some((group, self.elapsed));
                    self.finished = true;
                }
                FlowAction::CancelCallback => println!("{at}  CALLBACK request cancelled"),
                FlowAction::RequestCallback { number } => {
                    println!("{at}  CALLBACK requested on {number}: the request keeps the caller's place");
                }
                FlowAction::Queue(queued) => {
                    println!(
                        "{at}  QUEUE for group {}: agents' phones ring as \"{}\"; the first to answer is bridged",
                        queued.group, queued.display
                    );
                    self.reached = Some((queued.group, self.elapsed));
                    self.finished = true;
                }
                FlowAction::HangUp => {
                    println!("{at}  HANG UP");
                    self.finished = true;
                }
            }
        }
    }
}

enum Input {
    Key(char),
    Silence,
    End,
}

fn read_key(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> anyhow::Result<Input> {
    eprint!("key (0-9 * # A-D, empty line = no key, end of input = silence to the end)> ");
    match lines.next() {
        None => Ok(Input::End),
        Some(line) => {
            let line = line.context("reading keys from standard input")?;
            Ok(line
                .trim()
                .chars()
                .next()
                .map_or(Input::Silence, Input::Key))
        }
    }
}

/// A remembered language the flow would greet in, or why not.
fn check_remembered(routing: &Routing, language: &str, chosen_too: bool) -> anyhow::Result<()> {
    let hotline = &routing.hotline;
    if chosen_too {
        return Err(anyhow!(
            "--lang chooses in the language menu, which a remembered caller (--remembered) skips: \
             give one of them"
        ));
    }
    if hotline.remember_language.value.is_zero() {
        return Err(anyhow!(
            "--remembered: this routing remembers no language (remember_language = \"0s\")"
        ));
    }
    let languages: Vec<&str> = hotline
        .languages
        .value
        .iter()
        .map(|l| l.value.as_str())
        .collect();
    if languages.len() < 2 {
        return Err(anyhow!(
            "--remembered: this routing has one language, there is no language menu to skip"
        ));
    }
    if !languages.contains(&language) {
        return Err(anyhow!(
            "--remembered: language `{language}` is not in [hotline] languages ({}); such a \
             caller starts with the language menu",
            languages.join(", ")
        ));
    }
    Ok(())
}

fn local_time(routing: &Routing, text: &str) -> anyhow::Result<SystemTime> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M")
        .with_context(|| format!("--at `{text}`: expected YYYY-MM-DD HH:MM"))?;
    let zone = routing.hotline.timezone.value;
    let local = zone
        .from_local_datetime(&naive)
        .earliest()
        .ok_or_else(|| anyhow!("--at `{text}` does not exist in {zone} (clock change)"))?;
    Ok(SystemTime::from(local.with_timezone(&chrono::Utc)))
}

fn stamp(elapsed: Duration) -> String {
    format!("{:>7.1}s", elapsed.as_secs_f64())
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_telephone_keys_are_accepted() {
        let words = |list: &[&str]| list.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            parse_keys(&words(&["2 1", "*#", "ABCD0"])).unwrap(),
            "21*#ABCD0".chars().collect::<Vec<_>>()
        );
        for bad in ["x", "1e", "a", "+", "E"] {
            let error = parse_keys(&words(&[bad])).unwrap_err().to_string();
            assert!(error.contains("cannot be pressed"), "{bad}: {error}");
        }
    }
}
