//! The dashboard's and the wallboard's words in Lithuanian (the default) and English, chosen
//! with `?lang=lt|en`. Data (group display names) comes from the routing in the same language.

use chrono::{Datelike, NaiveDate, Weekday};

/// The page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Lt,
    En,
}

impl Lang {
    pub fn parse(value: &str) -> Result<Lang, String> {
        match value.trim() {
            "lt" => Ok(Lang::Lt),
            "en" => Ok(Lang::En),
            other => Err(format!("lang {other:?}: expected lt or en")),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Lt => "lt",
            Lang::En => "en",
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Lt => &LT,
            Lang::En => &EN,
        }
    }

    /// An agent state as shown (pauses with their reason).
    pub fn agent_state(self, state: &str) -> &'static str {
        let lt = self == Lang::Lt;
        match state {
            "idle" => pick(lt, "Laisvas", "Idle"),
            "ringing" => pick(lt, "Skamba", "Ringing"),
            "on_call" => pick(lt, "Kalba", "On call"),
            "wrap_up" => pick(lt, "Po pokalbio", "Wrap-up"),
            "paused" => pick(lt, "Pristabdytas: pertrauka", "Paused: break"),
            "logged_out" => pick(lt, "Pristabdytas: atsijungė", "Paused: logged out"),
            "auto_paused" => pick(lt, "Pristabdytas: neatsiliepė", "Paused: missed rings"),
            "unregistered" => pick(lt, "Neprisiregistravęs", "Unregistered"),
            "unreachable" => pick(lt, "Nepasiekiamas", "Unreachable"),
            _ => pick(lt, "Nežinoma", "Unknown"),
        }
    }

    /// A call outcome as shown.
    pub fn outcome(self, outcome: &str) -> String {
        let lt = self == Lang::Lt;
        let text = match outcome {
            "connected" => pick(lt, "sujungta", "connected"),
            "transferred" => pick(lt, "peradresuota", "transferred"),
            "abandoned_menu" => pick(lt, "padėjo meniu", "abandoned in menu"),
            "abandoned_queue" => pick(lt, "padėjo eilėje", "abandoned in queue"),
            "queue_timeout" => pick(lt, "per ilgai laukė", "queue timeout"),
            "overflowed" => pick(lt, "perkelta (perpildyta)", "overflowed"),
            "closed" => pick(lt, "nedarbo laikas", "closed"),
            "no_input" => pick(lt, "nieko nepasirinko", "no input"),
            "info_only" => pick(lt, "tik informacija", "information only"),
            "callback_requested" => pick(lt, "paprašė perskambinti", "callback requested"),
            "not_reached" => pick(lt, "neprisiskambinta", "not reached"),
            "transfer_failed" => pick(lt, "nepavyko peradresuoti", "transfer failed"),
            "rejected" => pick(lt, "atmesta", "rejected"),
            "error" => pick(lt, "klaida", "error"),
            "interrupted" => pick(lt, "nutraukta", "interrupted"),
            other => return other.to_owned(),
        };
        text.to_owned()
    }

    /// A pending callback's state as shown (`/api/live`'s `callbacks[].state`).
    pub fn callback_state(self, state: &str) -> String {
        let lt = self == Lang::Lt;
        let text = match state {
            "queued" => pick(lt, "eilėje", "queued"),
            "calling" => pick(lt, "skambinama", "calling"),
            "waiting" => pick(lt, "laukia kito bandymo", "waiting to retry"),
            other => return other.to_owned(),
        };
        text.to_owned()
    }

    /// A caller language code as shown.
    pub fn language_name(self, code: &str) -> String {
        let lt = self == Lang::Lt;
        let name = match code {
            "lt" => pick(lt, "lietuvių", "Lithuanian"),
            "en" => pick(lt, "anglų", "English"),
            "ru" => pick(lt, "rusų", "Russian"),
            "pl" => pick(lt, "lenkų", "Polish"),
            crate::cdr::stats::NONE_KEY => pick(lt, "(nepasirinkta)", "(none)"),
            other => return other.to_owned(),
        };
        name.to_owned()
    }

    /// `Monday 2026-03-02` / `2026-03-02, pirmadienis`.
    pub fn day_label(self, day: NaiveDate) -> String {
        let index = day.weekday().num_days_from_monday() as usize;
        match self {
            Lang::Lt => format!("{day}, {}", WEEKDAYS_LT.get(index).copied().unwrap_or("")),
            Lang::En => format!("{} {day}", WEEKDAYS_EN.get(index).copied().unwrap_or("")),
        }
    }

    /// `March 2026` / `2026 m. kovas`.
    pub fn month_label(self, first: NaiveDate) -> String {
        let index = first.month0() as usize;
        match self {
            Lang::Lt => format!(
                "{} m. {}",
                first.year(),
                MONTHS_LT.get(index).copied().unwrap_or("")
            ),
            Lang::En => format!(
                "{} {}",
                MONTHS_EN.get(index).copied().unwrap_or(""),
                first.year()
            ),
        }
    }

    /// `week 10` / `10 savaitė` (ISO week).
    pub fn week_label(self, monday: NaiveDate) -> String {
        let week = monday.iso_week().week();
        match self {
            Lang::Lt => format!("{week} savaitė"),
            Lang::En => format!("week {week}"),
        }
    }

    /// The short weekday name under a day in charts.
    pub fn weekday_short(self, day: Weekday) -> &'static str {
        let index = day.num_days_from_monday() as usize;
        let names: &[&'static str] = match self {
            Lang::Lt => &["Pr", "An", "Tr", "Kt", "Pn", "Št", "Sk"],
            Lang::En => &["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
        };
        names.get(index).copied().unwrap_or("")
    }
}

fn pick(lt: bool, lithuanian: &'static str, english: &'static str) -> &'static str {
    if lt {
        lithuanian
    } else {
        english
    }
}

const WEEKDAYS_LT: [&str; 7] = [
    "pirmadienis",
    "antradienis",
    "trečiadienis",
    "ketvirtadienis",
    "penktadienis",
    "šeštadienis",
    "sekmadienis",
];
const WEEKDAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS_LT: [&str; 12] = [
    "sausis",
    "vasaris",
    "kovas",
    "balandis",
    "gegužė",
    "birželis",
    "liepa",
    "rugpjūtis",
    "rugsėjis",
    "spalis",
    "lapkritis",
    "gruodis",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Every fixed text of the pages.
pub struct Texts {
    pub title: &'static str,
    pub dashboard: &'static str,
    pub wallboard: &'static str,
    pub live_snapshot: &'static str,
    pub no_snapshot: &'static str,
    pub statistics_for: &'static str,
    pub completed_only: &'static str,
    pub refreshes_every: &'static str,
    // Period picker.
    pub period: &'static str,
    pub day: &'static str,
    pub week: &'static str,
    pub month: &'static str,
    pub custom: &'static str,
    pub from: &'static str,
    pub to_inclusive: &'static str,
    pub show: &'static str,
    pub today: &'static str,
    pub this_week: &'static str,
    pub this_month: &'static str,
    pub previous: &'static str,
    pub next: &'static str,
    pub csv: &'static str,
    // Live.
    pub live: &'static str,
    pub calls_in_progress: &'static str,
    pub callers_waiting: &'static str,
    pub longest_wait: &'static str,
    pub agents: &'static str,
    pub enterprise: &'static str,
    pub waiting: &'static str,
    pub agents_available: &'static str,
    pub no_queues: &'static str,
    pub no_group: &'static str,
    pub trunks: &'static str,
    pub trunk: &'static str,
    pub state: &'static str,
    pub calls: &'static str,
    pub last_error: &'static str,
    pub next_try: &'static str,
    pub bans: &'static str,
    pub address: &'static str,
    pub reason: &'static str,
    pub ends_in: &'static str,
    pub agents_by_state: &'static str,
    // Agents table.
    pub agents_table: &'static str,
    pub agent: &'static str,
    pub groups: &'static str,
    pub languages: &'static str,
    pub calls_handled: &'static str,
    pub talk_time: &'static str,
    pub avg_talk: &'static str,
    pub any_language: &'static str,
    pub no_agents: &'static str,
    pub not_configured: &'static str,
    /// Column head of the agents' buttons, and the buttons.
    pub actions: &'static str,
    pub pause: &'static str,
    pub log_out: &'static str,
    pub make_available: &'static str,
    // Statistics.
    pub outcomes: &'static str,
    pub no_calls: &'static str,
    pub trend_per_day: &'static str,
    pub trend_per_hour: &'static str,
    pub service_level: &'static str,
    pub abandonment: &'static str,
    pub table_by_day: &'static str,
    pub table_by_hour: &'static str,
    pub date: &'static str,
    pub hour: &'static str,
    pub calls_per_hour: &'static str,
    pub calls_per_day: &'static str,
    pub rates_by_enterprise: &'static str,
    pub rates_by_language: &'static str,
    pub language: &'static str,
    pub offered: &'static str,
    pub answered: &'static str,
    pub abandoned: &'static str,
    /// Column head of abandoned / offered.
    pub abandoned_share: &'static str,
    pub asa: &'static str,
    pub max_wait: &'static str,
    pub nothing_offered: &'static str,
    /// Footer; `{sl}` and `{short}` are replaced by the thresholds in seconds.
    pub definitions: &'static str,
    // Callbacks.
    pub callbacks_pending: &'static str,
    pub number: &'static str,
    pub attempts: &'static str,
    pub waiting_since_request: &'static str,
    pub position_or_next_try: &'static str,
    /// Before the time to the next dial (`in 4:10`).
    pub in_time: &'static str,
    pub no_callbacks_pending: &'static str,
    pub callbacks_by_enterprise: &'static str,
    pub requested: &'static str,
    pub connected: &'static str,
    pub failed: &'static str,
    pub avg_net_wait: &'static str,
    pub total: &'static str,
    pub no_callbacks: &'static str,
    /// Under the callback figures; `{min}` is replaced by the threshold in minutes.
    pub callback_definitions: &'static str,
    // Wallboard.
    pub sl_today: &'static str,
    pub all_enterprises: &'static str,
}

pub static LT: Texts = Texts {
    title: "19118 miesto linija",
    dashboard: "Skydelis",
    wallboard: "Ekranas",
    live_snapshot: "Dabartinė būsena",
    no_snapshot: "dar nėra",
    statistics_for: "statistika už",
    completed_only: "tik baigti skambučiai",
    refreshes_every: "atnaujinama kas",
    period: "Laikotarpis",
    day: "Diena",
    week: "Savaitė",
    month: "Mėnuo",
    custom: "Pasirinktas",
    from: "Nuo",
    to_inclusive: "Iki (imtinai)",
    show: "Rodyti",
    today: "Šiandien",
    this_week: "Ši savaitė",
    this_month: "Šis mėnuo",
    previous: "‹ Ankstesnis",
    next: "Kitas ›",
    csv: "CSV",
    live: "Dabar",
    calls_in_progress: "vyksta skambučių",
    callers_waiting: "laukia eilėse",
    longest_wait: "ilgiausiai laukia",
    agents: "operatoriai",
    enterprise: "Įmonė",
    waiting: "laukia",
    agents_available: "laisvi operatoriai",
    no_queues: "grupių nėra",
    no_group: "(be grupės)",
    trunks: "Operatorių linijos",
    trunk: "linija",
    state: "Būsena",
    calls: "skambučiai",
    last_error: "paskutinė klaida",
    next_try: "kitas bandymas",
    bans: "Užblokuoti adresai",
    address: "adresas",
    reason: "priežastis",
    ends_in: "liko",
    agents_by_state: "Operatoriai pagal būseną",
    agents_table: "Operatoriai",
    agent: "Operatorius",
    groups: "Grupės",
    languages: "Kalbos",
    calls_handled: "Atsiliepė",
    talk_time: "Pokalbių laikas",
    avg_talk: "Vid. pokalbis",
    any_language: "bet kuri",
    no_agents: "operatorių nėra",
    not_configured: "nebėra konfigūracijoje",
    actions: "Veiksmai",
    pause: "Pertrauka",
    log_out: "Atjungti",
    make_available: "Grąžinti į darbą",
    outcomes: "Skambučių baigtys",
    no_calls: "šiuo laikotarpiu baigtų skambučių nėra",
    trend_per_day: "Aptarnavimo lygis ir atsisakę skambučiai pagal dieną",
    trend_per_hour: "Aptarnavimo lygis ir atsisakę skambučiai pagal valandą",
    service_level: "Aptarnavimo lygis (SL)",
    abandonment: "Atsisakė (nuo pasiūlytų)",
    table_by_day: "Lentelė pagal dienas",
    table_by_hour: "Lentelė pagal valandas",
    date: "Data",
    hour: "Valanda",
    calls_per_hour: "Skambučiai pagal valandą ir įmonę (vietos laikas)",
    calls_per_day: "Skambučiai pagal dieną ir įmonę",
    rates_by_enterprise: "Aptarnavimo lygis ir atsisakę pagal įmonę",
    rates_by_language: "Aptarnavimo lygis ir atsisakę pagal kalbą",
    language: "Kalba",
    offered: "pasiūlyta",
    answered: "atsiliepta",
    abandoned: "atsisakė",
    abandoned_share: "atsisakė %",
    asa: "vid. laukimas",
    max_wait: "ilgiausias laukimas",
    nothing_offered: "šiuo laikotarpiu grupėms pasiūlytų skambučių nėra",
    definitions: "SL = atsiliepta per {sl} s / (atsiliepta + atsisakė); atsisakė = padėjo \
                  ragelį pasirinkęs grupę ir laukęs {short} s ar ilgiau; atsisakė % = atsisakė / \
                  pasiūlyta. Apibrėžimai: <code>hotline stats --help</code>.",
    callbacks_pending: "Laukiantys perskambinimai",
    number: "Numeris",
    attempts: "bandymai",
    waiting_since_request: "laukia nuo prašymo",
    position_or_next_try: "vieta eilėje / kitas bandymas",
    in_time: "po",
    no_callbacks_pending: "laukiančių perskambinimų nėra",
    callbacks_by_enterprise: "Perskambinimai pagal įmonę",
    requested: "paprašė",
    connected: "sujungta",
    failed: "nepavyko",
    avg_net_wait: "vid. laukimas",
    total: "Iš viso",
    no_callbacks: "šiuo laikotarpiu perskambinimų nėra",
    callback_definitions: "pasiūlyta = girdėjo pasiūlymą perskambinti; paprašė = paliko eilę \
                           paprašęs perskambinti; sujungta = gyventojas sujungtas su \
                           operatoriumi; nepavyko = prašymai, kurių visi šio laikotarpio \
                           bandymai nepavyko (ir dar laukiantys kito bandymo); SL = sujungta \
                           per {min} min nuo prašymo / (sujungta + nepavyko); laukimas – nuo \
                           prašymo iki sujungimo. Bandymai nėra skambučiai į liniją: kitų \
                           lentelių skambučiai, SL ir laukimas jų neapima (baigtys ir \
                           operatorių atsiliepti skambučiai – apima).",
    sl_today: "SL šiandien",
    all_enterprises: "Visos įmonės",
};

pub static EN: Texts = Texts {
    title: "19118 city hotline",
    dashboard: "Dashboard",
    wallboard: "Wallboard",
    live_snapshot: "Live snapshot",
    no_snapshot: "none yet",
    statistics_for: "statistics for",
    completed_only: "completed calls only",
    refreshes_every: "refreshes every",
    period: "Period",
    day: "Day",
    week: "Week",
    month: "Month",
    custom: "Custom",
    from: "From",
    to_inclusive: "To (inclusive)",
    show: "Show",
    today: "Today",
    this_week: "This week",
    this_month: "This month",
    previous: "‹ Previous",
    next: "Next ›",
    csv: "CSV",
    live: "Live",
    calls_in_progress: "calls in progress",
    callers_waiting: "callers waiting",
    longest_wait: "longest wait",
    agents: "agents",
    enterprise: "Enterprise",
    waiting: "waiting",
    agents_available: "agents available",
    no_queues: "no groups",
    no_group: "(no group)",
    trunks: "Carrier trunks",
    trunk: "trunk",
    state: "State",
    calls: "calls",
    last_error: "last error",
    next_try: "next try",
    bans: "Banned addresses",
    address: "address",
    reason: "reason",
    ends_in: "ends in",
    agents_by_state: "Agents by state",
    agents_table: "Agents",
    agent: "Agent",
    groups: "Groups",
    languages: "Languages",
    calls_handled: "Calls handled",
    talk_time: "Talk time",
    avg_talk: "Avg talk",
    any_language: "any",
    no_agents: "no agents",
    not_configured: "no longer configured",
    actions: "Actions",
    pause: "Pause",
    log_out: "Log out",
    make_available: "Make available",
    outcomes: "Outcomes",
    no_calls: "no completed calls in this period",
    trend_per_day: "Service level and abandonment per day",
    trend_per_hour: "Service level and abandonment per hour",
    service_level: "Service level (SL)",
    abandonment: "Abandonment (of offered)",
    table_by_day: "Table by day",
    table_by_hour: "Table by hour",
    date: "Date",
    hour: "Hour",
    calls_per_hour: "Calls per hour by enterprise (local time)",
    calls_per_day: "Calls per day by enterprise",
    rates_by_enterprise: "Service level and abandonment by enterprise",
    rates_by_language: "Service level and abandonment by language",
    language: "Language",
    offered: "offered",
    answered: "answered",
    abandoned: "abandoned",
    abandoned_share: "abandonment",
    asa: "ASA",
    max_wait: "max wait",
    nothing_offered: "no calls offered to a group in this period",
    definitions: "SL = answered within {sl} s / (answered + abandoned); abandoned = hung up \
                  after choosing a group with a wait of {short} s or more; abandonment = \
                  abandoned / offered. Definitions: <code>hotline stats --help</code>.",
    callbacks_pending: "Pending callbacks",
    number: "Number",
    attempts: "attempts",
    waiting_since_request: "waiting since request",
    position_or_next_try: "position / next try",
    in_time: "in",
    no_callbacks_pending: "no callbacks pending",
    callbacks_by_enterprise: "Callbacks by enterprise",
    requested: "requested",
    connected: "connected",
    failed: "failed",
    avg_net_wait: "avg wait",
    total: "Total",
    no_callbacks: "no callbacks in this period",
    callback_definitions: "offered = heard the callback offer; requested = left the queue \
                           asking to be called back; connected = the resident was bridged to \
                           an agent; failed = requests whose attempts in this period all failed \
                           (including those waiting for their next try); SL = connected within \
                           {min} min of the request / (connected + failed); wait = from the \
                           request to the bridge. Attempts are not calls to the hotline: the \
                           other tables' calls, SL and waits leave them out (outcomes and the \
                           agents' calls handled include them).",
    sl_today: "SL today",
    all_enterprises: "All enterprises",
};
