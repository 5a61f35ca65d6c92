//! Every sample in `events/account-events` (the folder both onboarding functions share) is read
//! by this function's own parser, with the outcome its SOURCES.md states; events that are not for
//! us succeed without touching AWS.

trailkeeper::account_event_sample_tests!(trail_enabler, "account-events", offboarding: "ignored");
