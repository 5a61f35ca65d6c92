//! Every sample in `events/trail-enabler` is read by this function's own parser, with the outcome its
//! SOURCES.md states; events that are not for us succeed without touching AWS.

trailkeeper::account_event_sample_tests!(trail_enabler, "trail-enabler");
