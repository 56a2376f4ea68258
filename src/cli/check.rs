//! `hotline check [FILE]`: every problem as `FILE:LINE: key: message`, or a summary. Besides the
//! routing's own checks, every registering agent (`user = ...`) must have an entry in the
//! agents' credentials file (`sip.credentials`), or it could never register.

use std::path::Path;

use crate::media::prompts::PromptLibrary;
use crate::routing::active::load_checked;
use crate::routing::model::{AgentTarget, Problem, Routing};
use crate::sip::registrar::Credentials;

/// Prints the verdict; returns whether the file is fit to go live.
pub fn run(routing_path: &Path, prompts_dir: &Path, credentials: Option<&Path>) -> bool {
    let (prompts, prompt_errors) = PromptLibrary::load(prompts_dir);
    let checked = load_checked(routing_path, &prompts, &prompt_errors).and_then(|active| {
        let problems = credential_problems(&active.routing, credentials);
        if problems.is_empty() {
            Ok(active)
        } else {
            Err(problems)
        }
    });
    match checked {
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

/// Registering agents without a credentials entry (or with no credentials file at all).
pub fn credential_problems(routing: &Routing, credentials: Option<&Path>) -> Vec<Problem> {
    let users: Vec<(&str, &crate::routing::model::Place)> = routing
        .groups
        .values()
        .flat_map(|group| &group.agents)
        .filter_map(|agent| match &agent.target {
            AgentTarget::User(user) => Some((user.value.as_str(), &user.at)),
            AgentTarget::Uri(_) => None,
        })
        .collect();
    if users.is_empty() {
        return Vec::new();
    }
    let problem = |at: &crate::routing::model::Place, message: String| Problem {
        file: routing.file.clone(),
        line: at.line,
        key: at.key.clone(),
        message,
    };
    let Some(path) = credentials else {
        let (user, at) = users[0];
        return vec![problem(
            at,
            format!("agent \"{user}\" registers, but no sip.credentials file is set: nobody can register"),
        )];
    };
    let credentials = match Credentials::load(path) {
        Ok(credentials) => credentials,
        Err(error) => {
            let (_, at) = users[0];
            return vec![problem(at, format!("registering agents need {error}"))];
        }
    };
    users
        .into_iter()
        .filter(|(user, _)| !credentials.has_user(user))
        .map(|(user, at)| {
            problem(
                at,
                format!(
                    "agent \"{user}\" has no entry in {}: it could never register",
                    path.display()
                ),
            )
        })
        .collect()
}
