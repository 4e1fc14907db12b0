//! The console's handlebars templates (`templates/console/*.hbs`) and its
//! stylesheet. Templates are read from `console.templates_dir` when set;
//! any template the directory lacks is the copy built into pipemedic, so
//! pages can be reworded without rebuilding. A template that does not
//! compile stops start-up (and `pipemedic config check`) with its file,
//! line and column. Strict mode, HTML escaping on:
//! every `{{value}}` is escaped, and the only triple-stash (`{{{svg}}}`)
//! takes charts built by [`super::svg`], which escapes its own text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use serde::Serialize;

/// Templates built into pipemedic: (name, source). Names starting with `_`
/// are partials.
const BUNDLED: [(&str, &str); 9] = [
    (
        "_pager",
        include_str!("../../../templates/console/_pager.hbs"),
    ),
    (
        "_head",
        include_str!("../../../templates/console/_head.hbs"),
    ),
    (
        "_foot",
        include_str!("../../../templates/console/_foot.hbs"),
    ),
    (
        "login",
        include_str!("../../../templates/console/login.hbs"),
    ),
    (
        "overview",
        include_str!("../../../templates/console/overview.hbs"),
    ),
    (
        "pipeline",
        include_str!("../../../templates/console/pipeline.hbs"),
    ),
    (
        "incidents",
        include_str!("../../../templates/console/incidents.hbs"),
    ),
    (
        "incident",
        include_str!("../../../templates/console/incident.hbs"),
    ),
    (
        "audit",
        include_str!("../../../templates/console/audit.hbs"),
    ),
];

/// The stylesheet served at `/ui/static/console.css`.
pub const STYLESHEET: &str = include_str!("../../../templates/console/console.css");

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{}: cannot read: {message}", file.display())]
    Read { file: PathBuf, message: String },
    #[error("{}{}: {message}", file.display(), position(*line, *column))]
    Template {
        file: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("rendering console page `{name}`: {message}")]
    Render { name: String, message: String },
}

/// `:line:column` when known.
fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// The loaded console templates.
#[derive(Debug, Clone)]
pub struct Templates {
    hb: Handlebars<'static>,
}

impl Templates {
    /// Only the templates built into pipemedic.
    pub fn bundled() -> Self {
        Self::load(None).expect("the bundled console templates compile")
    }

    /// Templates from `dir` (every `*.hbs`, named by file stem), the bundled
    /// ones for any name it lacks. A missing directory means bundled only.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut sources: BTreeMap<String, (String, String)> = BUNDLED
            .iter()
            .map(|(name, text)| {
                (
                    name.to_string(),
                    (
                        format!("templates/console/{name}.hbs (bundled)"),
                        text.to_string(),
                    ),
                )
            })
            .collect();
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            let read_error = |file: &Path, e: std::io::Error| TemplateError::Read {
                file: file.to_path_buf(),
                message: e.to_string(),
            };
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| read_error(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "hbs"))
                .collect();
            paths.sort();
            for path in paths {
                let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                let text = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
                sources.insert(name.to_string(), (path.display().to_string(), text));
            }
        }
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        for (name, (file, text)) in &sources {
            hb.register_template_string(name, text)
                .map_err(|e| TemplateError::Template {
                    file: PathBuf::from(file),
                    line: e.pos().map(|p| p.0),
                    column: e.pos().map(|p| p.1),
                    message: e.reason().to_string(),
                })?;
        }
        Ok(Self { hb })
    }

    /// The templates `config` names: `console.templates_dir` when set.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, TemplateError> {
        let dir = config.console.templates_dir.trim();
        Self::load((!dir.is_empty()).then(|| Path::new(dir)))
    }

    /// Renders page `name` from `context`.
    pub fn render(&self, name: &str, context: &impl Serialize) -> Result<String, TemplateError> {
        self.hb
            .render(name, context)
            .map_err(|e| TemplateError::Render {
                name: name.to_string(),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_template_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("overview.hbs"),
            "<h1>Overview</h1>\n<p>{{#if open}}unclosed</p>\n",
        )
        .unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err();
        let text = e.to_string();
        let file = dir.path().join("overview.hbs").display().to_string();
        assert!(text.starts_with(&format!("{file}:")), "{text}");
        assert!(
            matches!(e, TemplateError::Template { line: Some(l), .. } if l >= 2),
            "{text}"
        );
    }

    #[test]
    fn a_directory_of_good_templates_replaces_only_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("login.hbs"), "custom {{title}}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let html = t
            .render("login", &serde_json::json!({"title": "Sign in"}))
            .unwrap();
        assert_eq!(html, "custom Sign in");
    }
}
