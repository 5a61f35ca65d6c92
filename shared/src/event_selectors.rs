//! What a trail records, from its event selectors: a trail that logs, and delivers a digest
//! every hour, records nothing if its selectors leave out management events. An administrator
//! of the account can do that with one `PutEventSelectors` (the trail guard SCP denies it; the
//! SCP is optional), so the spec owns the selectors too: every management event, read and
//! write, from every event source ([`ManagementEvents::all`]).
//!
//! Basic selectors (`EventSelectors`) and advanced ones (`AdvancedEventSelectors`) are read the
//! way CloudTrail applies them: an event is recorded when any selector takes it. A basic selector
//! takes management events when `IncludeManagementEvents` is true, of its `ReadWriteType`, less
//! its `ExcludeManagementEventSources`. An advanced selector takes them when its
//! `eventCategory` field equals `Management`; a `readOnly` field narrows it to reads or writes,
//! and any other field (`eventSource` NotEquals …) to some events only.

use std::fmt;

use aws_sdk_cloudtrail::operation::get_event_selectors::GetEventSelectorsOutput;
use aws_sdk_cloudtrail::types::{AdvancedEventSelector, EventSelector, ReadWriteType};
use serde::Serialize;

/// The management events a trail's selectors take.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManagementEvents {
    /// Every read event, from every source.
    pub reads: bool,
    /// Every write event, from every source.
    pub writes: bool,
    /// What some selector takes only in part: `read`/`write` events less sources or fields.
    pub partial: Vec<String>,
}

impl ManagementEvents {
    /// What a trail of the spec records: every management event, read and write.
    pub fn all(&self) -> bool {
        self.reads && self.writes
    }

    /// What the spec records.
    pub fn every() -> Self {
        Self {
            reads: true,
            writes: true,
            partial: Vec::new(),
        }
    }

    /// The repair: one basic selector, every management event, read and write.
    pub fn spec_selector() -> EventSelector {
        EventSelector::builder()
            .read_write_type(ReadWriteType::All)
            .include_management_events(true)
            .build()
    }

    pub fn from_sdk(out: &GetEventSelectorsOutput) -> Self {
        let mut m = Self::default();
        for s in out.event_selectors() {
            m.add_basic(s);
        }
        for s in out.advanced_event_selectors() {
            m.add_advanced(s);
        }
        m
    }

    fn add_basic(&mut self, s: &EventSelector) {
        if s.include_management_events() != Some(true) {
            return;
        }
        // CloudTrail's default for a selector without a type is All.
        let (reads, writes) = match s.read_write_type() {
            Some(ReadWriteType::ReadOnly) => (true, false),
            Some(ReadWriteType::WriteOnly) => (false, true),
            _ => (true, true),
        };
        let excluded = s.exclude_management_event_sources();
        if excluded.is_empty() {
            self.reads |= reads;
            self.writes |= writes;
        } else {
            self.partial.push(format!(
                "{} except from {}",
                kinds(reads, writes),
                excluded.join(", ")
            ));
        }
    }

    fn add_advanced(&mut self, s: &AdvancedEventSelector) {
        let fields = s.field_selectors();
        let management = fields
            .iter()
            .any(|f| f.field() == "eventCategory" && f.equals().iter().any(|v| v == "Management"));
        if !management {
            return;
        }
        let (mut reads, mut writes) = (true, true);
        let mut narrowed = Vec::new();
        for f in fields {
            match f.field() {
                "eventCategory" if f.equals().iter().all(|v| v == "Management") => {}
                "readOnly" if f.equals() == ["true"] => writes = false,
                "readOnly" if f.equals() == ["false"] => reads = false,
                // readOnly equal to both is every event.
                "readOnly" if f.equals().len() == 2 => {}
                other => narrowed.push(format!("{other} {}", conditions(f))),
            }
        }
        if narrowed.is_empty() {
            self.reads |= reads;
            self.writes |= writes;
        } else {
            self.partial.push(format!(
                "{} where {}",
                kinds(reads, writes),
                narrowed.join(" and ")
            ));
        }
    }
}

fn kinds(reads: bool, writes: bool) -> &'static str {
    match (reads, writes) {
        (true, true) => "read and write events",
        (true, false) => "read events",
        _ => "write events",
    }
}

fn conditions(f: &aws_sdk_cloudtrail::types::AdvancedFieldSelector) -> String {
    let mut parts = Vec::new();
    for (op, values) in [
        ("Equals", f.equals()),
        ("StartsWith", f.starts_with()),
        ("EndsWith", f.ends_with()),
        ("NotEquals", f.not_equals()),
        ("NotStartsWith", f.not_starts_with()),
        ("NotEndsWith", f.not_ends_with()),
    ] {
        if !values.is_empty() {
            parts.push(format!("{op} {}", values.join("|")));
        }
    }
    parts.join(" ")
}

/// How the audit and the trail-enabler's drift name what is recorded.
impl fmt::Display for ManagementEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.reads, self.writes, self.partial.is_empty()) {
            (true, true, _) => write!(f, "all management events, read and write"),
            (false, false, true) => write!(f, "no management events"),
            (true, false, true) => write!(f, "read management events only"),
            (false, true, true) => write!(f, "write management events only"),
            _ => {
                let mut parts = Vec::new();
                if self.reads {
                    parts.push("every read management event".to_string());
                }
                if self.writes {
                    parts.push("every write management event".to_string());
                }
                parts.extend(self.partial.iter().map(|p| format!("management {p}")));
                write!(f, "{}", parts.join("; "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudtrail::types::AdvancedFieldSelector;

    fn field(name: &str, equals: &[&str]) -> AdvancedFieldSelector {
        let mut b = AdvancedFieldSelector::builder().field(name);
        for v in equals {
            b = b.equals(*v);
        }
        b.build().unwrap()
    }

    fn advanced(fields: Vec<AdvancedFieldSelector>) -> AdvancedEventSelector {
        AdvancedEventSelector::builder()
            .set_field_selectors(Some(fields))
            .build()
            .unwrap()
    }

    fn of(basic: Vec<EventSelector>, adv: Vec<AdvancedEventSelector>) -> ManagementEvents {
        ManagementEvents::from_sdk(
            &GetEventSelectorsOutput::builder()
                .set_event_selectors(Some(basic))
                .set_advanced_event_selectors(Some(adv))
                .build(),
        )
    }

    fn basic(rw: ReadWriteType, management: bool, excluded: &[&str]) -> EventSelector {
        EventSelector::builder()
            .read_write_type(rw)
            .include_management_events(management)
            .set_exclude_management_event_sources(Some(
                excluded.iter().map(|s| s.to_string()).collect(),
            ))
            .build()
    }

    #[test]
    fn the_default_selector_and_the_spec_take_everything() {
        let m = of(vec![basic(ReadWriteType::All, true, &[])], vec![]);
        assert!(m.all(), "{m}");
        assert_eq!(m.to_string(), "all management events, read and write");
        assert!(of(vec![ManagementEvents::spec_selector()], vec![]).all());
        let m = of(
            vec![],
            vec![advanced(vec![field("eventCategory", &["Management"])])],
        );
        assert!(m.all(), "{m}");
    }

    #[test]
    fn selectors_that_leave_events_out_are_named() {
        let cases: Vec<(ManagementEvents, &str)> = vec![
            (of(vec![], vec![]), "no management events"),
            (
                of(vec![basic(ReadWriteType::All, false, &[])], vec![]),
                "no management events",
            ),
            (
                of(vec![basic(ReadWriteType::ReadOnly, true, &[])], vec![]),
                "read management events only",
            ),
            (
                of(
                    vec![basic(ReadWriteType::All, true, &["kms.amazonaws.com"])],
                    vec![],
                ),
                "management read and write events except from kms.amazonaws.com",
            ),
            (
                of(
                    vec![],
                    vec![advanced(vec![
                        field("eventCategory", &["Management"]),
                        field("readOnly", &["true"]),
                    ])],
                ),
                "read management events only",
            ),
            (
                of(
                    vec![],
                    vec![advanced(vec![
                        field("eventCategory", &["Management"]),
                        AdvancedFieldSelector::builder()
                            .field("eventSource")
                            .not_equals("iam.amazonaws.com")
                            .build()
                            .unwrap(),
                    ])],
                ),
                "management read and write events where eventSource NotEquals iam.amazonaws.com",
            ),
            // Data events only.
            (
                of(
                    vec![],
                    vec![advanced(vec![
                        field("eventCategory", &["Data"]),
                        field("resources.type", &["AWS::S3::Object"]),
                    ])],
                ),
                "no management events",
            ),
        ];
        for (m, text) in cases {
            assert!(!m.all(), "{m}");
            assert_eq!(m.to_string(), text);
        }
    }

    #[test]
    fn a_read_selector_and_a_write_selector_together_take_everything() {
        let m = of(
            vec![
                basic(ReadWriteType::ReadOnly, true, &[]),
                basic(ReadWriteType::WriteOnly, true, &[]),
            ],
            vec![],
        );
        assert!(m.all(), "{m}");
        let m = of(
            vec![basic(ReadWriteType::WriteOnly, true, &[])],
            vec![advanced(vec![
                field("eventCategory", &["Management"]),
                field("readOnly", &["true"]),
            ])],
        );
        assert!(m.all(), "{m}");
    }
}
