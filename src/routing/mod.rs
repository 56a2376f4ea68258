//! Call routing configuration (`routing.toml`): the typed model, opening hours and the
//! cross-reference checks supervisors run before a config goes live.
pub mod active;
pub mod check;
pub mod hours;
pub mod model;
pub mod reader;

pub use check::{check, PromptLoadFailure};
pub use hours::{OpeningHours, RelativeDay, Reopening, TimeRange};
pub use model::{Problem, Routing};
pub use reader::{load, parse};
#[cfg(test)]
mod encryption_tests;
#[cfg(test)]
mod language_tests;
#[cfg(test)]
mod tests;
