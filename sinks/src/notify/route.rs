//! Routing: which endpoints of which integrations a notification goes to, from the
//! `[[notify.routes]]` of the config (kinds, least severity, tags).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::config::{parse_target, ConfigError, RouteConfig};
use super::message::{Kind, Notification, Severity};
use super::Integration;

/// One endpoint of one integration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub integration: String,
    pub endpoint: usize,
}

pub(crate) struct Route {
    kinds: Vec<Kind>,
    min_severity: Severity,
    tags: Vec<String>,
    targets: Vec<Target>,
}

impl Route {
    fn matches(&self, n: &Notification) -> bool {
        self.kinds.contains(&n.kind())
            && n.severity() >= self.min_severity
            && (self.tags.is_empty() || n.tags().iter().any(|t| self.tags.contains(t)))
    }
}

/// Checks the routes against the integrations and resolves their targets.
pub(crate) fn compile(
    configs: &[RouteConfig],
    integrations: &HashMap<String, Box<dyn Integration>>,
) -> Result<Vec<Route>, ConfigError> {
    let mut routes = Vec::new();
    for (i, r) in configs.iter().enumerate() {
        let invalid = |reason: String| ConfigError::Route {
            route: i,
            reason: if r.name.is_empty() {
                reason
            } else {
                format!("({}) {reason}", r.name)
            },
        };
        if r.kinds.is_empty() || r.kinds.contains(&Kind::Raw) {
            return Err(invalid(
                "kinds must name result, alert or event (raw messages name their endpoint)".into(),
            ));
        }
        if r.to.is_empty() {
            return Err(invalid("to is empty".into()));
        }
        let mut targets = Vec::new();
        for t in &r.to {
            let (name, index) = parse_target(t)
                .ok_or_else(|| invalid(format!("{t:?} is not \"name\" or \"name[i]\"")))?;
            let integration = integrations
                .get(name)
                .ok_or_else(|| invalid(format!("no integration named {name:?}")))?;
            let count = integration.endpoints().len();
            match index {
                Some(i) if i >= count => {
                    return Err(invalid(format!("{name} has {count} endpoints, not {t}")))
                }
                Some(i) => targets.push(Target {
                    integration: name.to_string(),
                    endpoint: i,
                }),
                None => targets.extend((0..count).map(|i| Target {
                    integration: name.to_string(),
                    endpoint: i,
                })),
            }
        }
        routes.push(Route {
            kinds: r.kinds.clone(),
            min_severity: r.min_severity,
            tags: r.tags.clone(),
            targets,
        });
    }
    Ok(routes)
}

/// The endpoints of every route `n` matches, each once, in route order.
pub(crate) fn route(routes: &[Route], n: &Notification) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    for route in routes.iter().filter(|r| r.matches(n)) {
        for t in &route.targets {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::alert;
    use crate::notify::{IntegrationConfig, SlackConfig};
    use crate::notify::{Notifier, NotifyConfig};

    fn config(routes: Vec<RouteConfig>) -> NotifyConfig {
        let slack = |n: usize| {
            IntegrationConfig::Slack(SlackConfig {
                endpoints: (0..n)
                    .map(|i| format!("https://hooks.slack.com/services/T/B/{i}"))
                    .collect(),
            })
        };
        NotifyConfig {
            integrations: [
                ("team".to_string(), slack(2)),
                ("ops".to_string(), slack(1)),
            ]
            .into_iter()
            .collect(),
            routes,
            ..Default::default()
        }
    }

    #[test]
    fn routes_match_kind_severity_and_tags_and_each_endpoint_appears_once() {
        let notifier = Notifier::new(&config(vec![
            RouteConfig {
                to: vec!["team".into()],
                ..Default::default()
            },
            RouteConfig {
                min_severity: Severity::Critical,
                to: vec!["ops".into(), "team[1]".into()],
                ..Default::default()
            },
            RouteConfig {
                kinds: vec![Kind::Event],
                tags: vec!["prod".into()],
                to: vec!["ops".into()],
                ..Default::default()
            },
        ]))
        .unwrap();
        let mut a = alert();
        let t = |i: &str, e| Target {
            integration: i.into(),
            endpoint: e,
        };
        assert_eq!(
            notifier.targets(&Notification::Alert(a.clone())),
            [t("team", 0), t("team", 1)]
        );
        a.severity = Severity::Critical;
        assert_eq!(
            notifier.targets(&Notification::Alert(a)),
            [t("team", 0), t("team", 1), t("ops", 0)]
        );
        let mut e = crate::notify::fixtures::event();
        e.severity = Severity::Low;
        assert_eq!(notifier.targets(&Notification::Event(e.clone())).len(), 2);
        e.tags = vec!["prod".into()];
        assert_eq!(notifier.targets(&Notification::Event(e)).len(), 3);
    }

    #[test]
    fn bad_routes_are_config_errors() {
        for (to, expected) in [
            ("nobody", "no integration named"),
            ("team[5]", "has 2 endpoints"),
            ("team[", "is not"),
        ] {
            let err = Notifier::new(&config(vec![RouteConfig {
                to: vec![to.into()],
                ..Default::default()
            }]))
            .err()
            .unwrap();
            assert!(err.to_string().contains(expected), "{err}");
            assert!(err.to_string().starts_with("notify.routes[0]"), "{err}");
        }
        let raw = Notifier::new(&config(vec![RouteConfig {
            kinds: vec![Kind::Raw],
            to: vec!["team".into()],
            ..Default::default()
        }]));
        assert!(matches!(raw, Err(ConfigError::Route { .. })));
    }
}
