//! `hotline check [FILE]`: every problem as `FILE:LINE: key: message`, or a summary.

use std::path::Path;

use crate::media::prompts::PromptLibrary;
use crate::routing::active::load_checked;

/// Prints the verdict; returns whether the file is fit to go live.
pub fn run(routing_path: &Path, prompts_dir: &Path) -> bool {
    let (prompts, prompt_errors) = PromptLibrary::load(prompts_dir);
    match load_checked(routing_path, &prompts, &prompt_errors) {
        Ok(active) => {
            let routing = &active.routing;
            let agents: usize = routing
                .groups
                .values()
                .map(|group| group.agents.len())
                .sum();
            let languages: Vec<&str> = routing
                .hotline
                .languages
                .value
                .iter()
                .map(|l| l.value.as_str())
                .collect();
            println!(
                "{}: OK (hash {}): languages {}, {} menus, {} groups, {} agents, {} opening-hours tables",
                routing_path.display(),
                active.hash,
                languages.join(", "),
                routing.menus.len(),
                routing.groups.len(),
                agents,
                routing.hours.len(),
            );
            true
        }
        Err(problems) => {
            for problem in &problems {
                println!("{problem}");
            }
            eprintln!(
                "{}: {} problem(s); not fit to go live",
                routing_path.display(),
                problems.len()
            );
            false
        }
    }
}
