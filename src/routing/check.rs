//! Whole-config checks run before a routing file goes live: references between menus, groups
//! and hours; reachability and exits of the menu graph; digits; prompts in every language;
//! agent addresses. Every problem points at the key that causes it.
//!
//! "Loop without exit": a menu from which no sequence of key presses (submenus, `play` then a
//! menu, `back` to any menu that leads here) ever reaches a group or a hangup. A caller there
//! can only wander between menus until the attempts run out, so each such menu is reported.

use crate::routing::model::{
    Action, AfterPlay, AgentTarget, Place, Problem, Routing, Transfer, WhenClosed,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A prompt file that exists but could not be decoded, as the prompt library reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptLoadFailure {
    pub language: String,
    pub name: String,
    pub reason: String,
}

/// Queue positions the flow can announce (`number_1` ..= this); beyond it plays `queue_hold`.
pub const ANNOUNCED_QUEUE_POSITIONS: u32 = 20;
/// Expected waits the flow can announce (`wait_minutes_1` ..= this); beyond it plays
/// `queue_wait_long`.
pub const ANNOUNCED_WAIT_MINUTES: u32 = 15;

const MAX_LANGUAGES: usize = 9;

/// Runs every check; `prompts(language, name)` says whether a prompt file exists and
/// `load_failures` lists prompt files that exist but do not decode.
pub fn check(
    routing: &Routing,
    prompts: &dyn Fn(&str, &str) -> bool,
    load_failures: &[PromptLoadFailure],
) -> Vec<Problem> {
    let mut checker = Checker {
        routing,
        problems: Vec::new(),
        prompt_uses: Vec::new(),
    };
    checker.hotline();
    checker.menus();
    checker.menu_graph();
    checker.groups();
    checker.hours();
    checker.prompts(prompts, load_failures);
    let mut problems = checker.problems;
    problems.sort_by(|a, b| (a.line, &a.key, &a.message).cmp(&(b.line, &b.key, &b.message)));
    problems.dedup();
    problems
}

/// A prompt named by the config (or needed by the flow), with the key to blame.
struct PromptUse {
    name: String,
    at: Place,
    /// `None` = every configured language.
    language: Option<String>,
}

struct Checker<'r> {
    routing: &'r Routing,
    problems: Vec<Problem>,
    prompt_uses: Vec<PromptUse>,
}

impl Checker<'_> {
    fn push(&mut self, at: &Place, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.routing.file.clone(),
            line: at.line,
            key: at.key.clone(),
            message: message.into(),
        });
    }

    fn use_prompt(&mut self, name: &str, at: &Place) {
        self.prompt_uses.push(PromptUse {
            name: name.to_string(),
            at: at.clone(),
            language: None,
        });
    }

    fn require_group(&mut self, name: &str, at: &Place, role: &str) {
        if !self.routing.groups.contains_key(name) {
            self.push(at, format!("{role} \"{name}\" is not a defined group"));
        }
    }

    fn require_menu(&mut self, name: &str, at: &Place) {
        if !self.routing.menus.contains_key(name) {
            self.push(at, format!("menu \"{name}\" is not defined"));
        }
    }

    fn hotline(&mut self) {
        let hotline = &self.routing.hotline;
        let languages = &hotline.languages;
        if languages.value.is_empty() {
            self.push(&languages.at, "at least one language is needed");
        }
        if languages.value.len() > MAX_LANGUAGES {
            self.push(
                &languages.at,
                format!(
                    "{} languages configured, but the language menu has only digits 1-9",
                    languages.value.len()
                ),
            );
        }
        let mut seen = BTreeSet::new();
        for language in &languages.value {
            if !seen.insert(language.value.as_str()) {
                self.push(
                    &language.at,
                    format!("language \"{}\" is listed twice", language.value),
                );
            }
            self.prompt_uses.push(PromptUse {
                name: format!("language_menu_{}", language.value),
                at: languages.at.clone(),
                language: Some(language.value.clone()),
            });
        }
        if !seen.contains(hotline.default_language.value.as_str()) {
            let message = format!(
                "default language \"{}\" is not in `languages`",
                hotline.default_language.value
            );
            self.push(&hotline.default_language.at, message);
        }
        if let Some(key) = &hotline.operator_key {
            let language_digit = key.value.to_digit(10).and_then(|d| usize::try_from(d).ok());
            if language_digit.is_some_and(|d| d >= 1 && d <= languages.value.len()) {
                let message = format!(
                    "operator key \"{}\" also picks a language in the language menu",
                    key.value
                );
                self.push(&key.at, message);
            }
        }
        let fallback = hotline.fallback.clone();
        self.require_group(&fallback.value, &fallback.at, "fallback");
        let start = hotline.start.clone();
        self.require_menu(&start.value, &start.at);
        if let Some(music) = &hotline.music {
            self.use_prompt(&music.value, &music.at);
        }
        self.change_language_key();
        // What the flow plays by itself, as the flow says for this routing.
        let at = languages.at.clone();
        for name in crate::ivr::menu::prompts::flow_prompts(self.routing) {
            self.use_prompt(&name, &at);
        }
    }

    /// With `remember_language` on, the change-language key is pressed in the start menu, so
    /// it must not be one of its options, nor the operator key.
    fn change_language_key(&mut self) {
        let hotline = &self.routing.hotline;
        if hotline.remember_language.value.is_zero() || hotline.languages.value.len() < 2 {
            return;
        }
        let key = hotline.change_language_key.clone();
        let start = &hotline.start.value;
        let option = self
            .routing
            .menus
            .get(start)
            .and_then(|menu| menu.options.get(&key.value.to_string()));
        if let Some(option) = option {
            let message = format!(
                "change-language key \"{}\" is also option \"{}\" of the start menu \"{start}\" \
                 (line {}): choose another key or another option",
                key.value, key.value, option.at.line
            );
            self.push(&key.at, message);
        }
        if hotline.operator_key.as_ref().map(|k| k.value) == Some(key.value) {
            let message = format!(
                "change-language key \"{}\" is the operator key: choose another key",
                key.value
            );
            self.push(&key.at, message);
        }
    }

    fn menus(&mut self) {
        let routing = self.routing;
        for menu in routing.menus.values() {
            self.use_prompt(&menu.prompt.value, &menu.prompt.at);
            for (digit, option) in &menu.options {
                let valid = digit.len() == 1
                    && digit
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
                if !valid {
                    self.push(
                        &option.at,
                        format!("invalid digit \"{digit}\" (expected one of 0-9, *, #)"),
                    );
                }
                let operator = routing.hotline.operator_key.as_ref().map(|k| k.value);
                if operator.is_some_and(|key| digit.chars().eq([key])) {
                    self.push(
                        &option.at,
                        format!("key \"{digit}\" is the operator key (hotline.operator_key): this option could never be chosen"),
                    );
                }
                match &option.action {
                    Action::Group(group) => self.require_group(&group.value, &group.at, "group"),
                    Action::Menu(target) => self.require_menu(&target.value, &target.at),
                    Action::Play { prompt, then } => {
                        self.use_prompt(&prompt.value, &prompt.at);
                        if let AfterPlay::Menu(target) = then {
                            self.require_menu(&target.value, &target.at);
                        }
                    }
                    Action::Repeat | Action::Back | Action::Hangup => {}
                }
            }
        }
    }
}

fn languages(routing: &Routing) -> Vec<&str> {
    let list = &routing.hotline.languages.value;
    list.iter().map(|l| l.value.as_str()).collect()
}

/// Menus each menu can move to by one key press, `back` excluded.
fn forward_edges(routing: &Routing) -> BTreeMap<&str, Vec<&str>> {
    let mut edges = BTreeMap::new();
    for (name, menu) in &routing.menus {
        let targets = menu
            .options
            .values()
            .filter_map(|option| match &option.action {
                Action::Menu(target)
                | Action::Play {
                    then: AfterPlay::Menu(target),
                    ..
                } => Some(target.value.as_str()),
                _ => None,
            })
            .filter(|target| routing.menus.contains_key(*target))
            .collect();
        edges.insert(name.as_str(), targets);
    }
    edges
}

impl Checker<'_> {
    fn menu_graph(&mut self) {
        let routing = self.routing;
        let edges = forward_edges(routing);
        let start = routing.hotline.start.value.as_str();
        let mut reachable = BTreeSet::new();
        let mut queue = VecDeque::new();
        if routing.menus.contains_key(start) {
            reachable.insert(start);
            queue.push_back(start);
        }
        while let Some(menu) = queue.pop_front() {
            for target in edges.get(menu).into_iter().flatten() {
                if reachable.insert(target) {
                    queue.push_back(target);
                }
            }
        }
        for (name, menu) in &routing.menus {
            if !reachable.contains(name.as_str()) {
                self.push(
                    &menu.at,
                    format!("menu is not reachable from start menu \"{start}\""),
                );
            }
        }

        // `back` returns to whichever menu led here, so it can move to any predecessor.
        let mut predecessors: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, targets) in &edges {
            for target in targets {
                predecessors.entry(target).or_default().push(from);
            }
        }
        let mut has_exit: BTreeSet<&str> = routing
            .menus
            .iter()
            .filter(|(_, menu)| {
                menu.options.values().any(|option| {
                    matches!(
                        option.action,
                        Action::Group(_)
                            | Action::Hangup
                            | Action::Play {
                                then: AfterPlay::Hangup,
                                ..
                            }
                    )
                })
            })
            .map(|(name, _)| name.as_str())
            .collect();
        loop {
            let before = has_exit.len();
            for (name, menu) in &routing.menus {
                let uses_back = menu.options.values().any(|option| {
                    matches!(
                        option.action,
                        Action::Back
                            | Action::Play {
                                then: AfterPlay::Back,
                                ..
                            }
                    )
                });
                let forward = edges.get(name.as_str()).into_iter().flatten();
                let backward = predecessors
                    .get(name.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|_| uses_back);
                if forward.chain(backward).any(|next| has_exit.contains(next)) {
                    has_exit.insert(name.as_str());
                }
            }
            if has_exit.len() == before {
                break;
            }
        }
        for (name, menu) in &routing.menus {
            if !has_exit.contains(name.as_str()) {
                self.push(
                    &menu.at,
                    "loop without exit: no choice from this menu ever reaches a group or a hangup",
                );
            }
        }
    }

    fn groups(&mut self) {
        let routing = self.routing;
        let languages = languages(routing);
        for group in routing.groups.values() {
            let missing: Vec<&str> = languages
                .iter()
                .copied()
                .filter(|l| !group.name.value.contains_key(*l))
                .collect();
            if !missing.is_empty() {
                self.push(
                    &group.name.at,
                    format!("name missing in: {}", missing.join(", ")),
                );
            }
            for language in group.name.value.keys() {
                if !languages.contains(&language.as_str()) {
                    self.push(
                        &group.name.at,
                        format!("\"{language}\" is not a configured language"),
                    );
                }
            }
            // The organisation's name is played to callers queued for it (bridge groups).
            if let Some(announce) = group
                .announce
                .as_ref()
                .filter(|_| group.transfer == Transfer::Bridge)
            {
                self.use_prompt(&announce.value, &announce.at);
            }
            if let Some(music) = group
                .music
                .as_ref()
                .filter(|_| group.transfer == Transfer::Bridge)
            {
                self.use_prompt(&music.value, &music.at);
            }
            if let Some(hours) = &group.hours {
                if !routing.hours.contains_key(&hours.value) {
                    self.push(
                        &hours.at,
                        format!("hours \"{}\" are not defined", hours.value),
                    );
                }
            }
            if let Some(callback) = &group.callback {
                if group.transfer != Transfer::Bridge {
                    self.push(
                        &callback.at,
                        "a callback needs a queue: the group's transfer must be bridge",
                    );
                }
                if let Some(window) = &callback.window {
                    if !routing.hours.contains_key(&window.value) {
                        self.push(
                            &window.at,
                            format!(
                                "hours \"{}\" are not defined (window is \"hours\", the group's, or an [hours.NAME])",
                                window.value
                            ),
                        );
                    }
                }
            }
            if let WhenClosed::Group(target) = &group.when_closed {
                self.require_group(&target.value, &target.at, "when_closed");
            }
            if let Some(overflow) = &group.overflow {
                self.require_group(&overflow.value, &overflow.at, "overflow");
            }
            if group.agents.is_empty() {
                self.push(&group.at, "a group needs at least one agent");
            }
            for agent in &group.agents {
                match &agent.target {
                    AgentTarget::Uri(uri) => {
                        if let Err(reason) = validate_sip_uri(&uri.value) {
                            self.push(
                                &uri.at,
                                format!("bad agent URI \"{}\": {reason}", uri.value),
                            );
                        }
                    }
                    AgentTarget::User(user) => {
                        let bad = user.value.is_empty()
                            || user
                                .value
                                .chars()
                                .any(|c| c.is_whitespace() || c == '@' || c == ':');
                        if bad {
                            self.push(
                                &user.at,
                                format!(
                                    "bad agent user \"{}\": expected a bare user name",
                                    user.value
                                ),
                            );
                        }
                    }
                }
                for language in &agent.languages {
                    if !languages.contains(&language.value.as_str()) {
                        self.push(
                            &language.at,
                            format!("\"{}\" is not a configured language", language.value),
                        );
                    }
                }
            }
        }
    }

    /// The "closed" announcement speaks each opening time as hour_HH + minute_MM.
    fn hours(&mut self) {
        let routing = self.routing;
        for hours in routing.hours.values() {
            for (weekday, at) in &hours.weekly_at {
                let index = weekday.num_days_from_monday() as usize;
                for range in hours.schedule.weekly.get(index).into_iter().flatten() {
                    let hour = range.start_minute / 60;
                    let minute = range.start_minute % 60;
                    self.use_prompt(&format!("hour_{hour:02}"), at);
                    if minute % 15 == 0 {
                        self.use_prompt(&format!("minute_{minute:02}"), at);
                    } else {
                        // The real cause, not the missing `minute_MM` it would lead to.
                        self.push(
                            at,
                            format!(
                                "opening time {hour:02}:{minute:02} is off the quarter hour: the \
                                 closed message says times on :00, :15, :30 or :45 only"
                            ),
                        );
                    }
                }
            }
        }
    }

    fn prompts(
        &mut self,
        prompts: &dyn Fn(&str, &str) -> bool,
        load_failures: &[PromptLoadFailure],
    ) {
        let languages: Vec<String> = languages(self.routing)
            .into_iter()
            .map(str::to_string)
            .collect();
        let uses = std::mem::take(&mut self.prompt_uses);
        for prompt in &uses {
            let wanted: Vec<&String> = match &prompt.language {
                Some(language) => vec![language],
                None => languages.iter().collect(),
            };
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|language| !prompts(language, &prompt.name))
                .map(|language| language.as_str())
                .collect();
            if !missing.is_empty() {
                self.push(
                    &prompt.at,
                    format!(
                        "prompt \"{}\" is missing in: {}",
                        prompt.name,
                        missing.join(", ")
                    ),
                );
            }
            for failure in load_failures {
                if failure.name == prompt.name && wanted.contains(&&failure.language) {
                    self.push(
                        &prompt.at,
                        format!(
                            "prompt \"{}\" ({}) does not decode: {}",
                            prompt.name, failure.language, failure.reason
                        ),
                    );
                }
            }
        }
    }
}

/// Accepts `sip:`/`sips:` URIs of the form `[user@]host[:port][;params]`, host being a DNS
/// name, an IPv4 address or a bracketed IPv6 address.
pub fn validate_sip_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .ok_or("expected a sip: or sips: URI")?;
    let rest = rest.split([';', '?']).next().unwrap_or_default();
    let host_port = match rest.rsplit_once('@') {
        Some((user, host_port)) => {
            if user.is_empty() || user.chars().any(char::is_whitespace) {
                return Err("bad user part".to_string());
            }
            host_port
        }
        None => rest,
    };
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or("unclosed IPv6 bracket")?;
        address
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| "bad IPv6 address".to_string())?;
        (None, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(host_port), None),
        }
    };
    if let Some(host) = host {
        let valid = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err("missing or bad host".to_string());
        }
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("bad port \"{port}\"")),
        }
    }
    Ok(())
}
