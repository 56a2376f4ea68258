//! Call routing configuration (`routing.toml`): the typed model, opening hours and the
//! cross-reference checks supervisors run before a config goes live.
pub mod active;
pub mod check;
pub mod hours;
pub mod model;

pub use check::{check, PromptLoadFailure};
pub use hours::{OpeningHours, RelativeDay, Reopening, TimeRange};
pub use model::{load, parse, Problem, Routing};
#[cfg(test)]
mod tests;
