//! Tests of the counter region: rows, retiring, histograms, mappings.
use super::*;

#[test]
fn rows_sum_and_guards_release() {
    let region = Region::new(2).unwrap();
    let a = region.worker_row(0);
    let b = region.worker_row(1);
    a.add_listener(3, ListenerCounter::SentBytes, 5);
    b.add_listener(3, ListenerCounter::SentBytes, 7);
    assert_eq!(region.listener_total(3, ListenerCounter::SentBytes), 12);
    {
        let _g1 = ActiveGuard::new(&a, 9);
        let _g2 = ActiveGuard::new(&b, 9);
        assert_eq!(region.upstream_total(9, UpstreamCounter::Active), 2);
    }
    assert_eq!(region.upstream_total(9, UpstreamCounter::Active), 0);
    assert!(region.is_up(9));
    region.set_up(9, false);
    assert!(!region.is_up(9));
    region.count_check(9, CheckResult::Timeout);
    assert_eq!(region.checks(9, CheckResult::Timeout), 1);
    assert_eq!(region.checks(9, CheckResult::Success), 0);
    assert!(!region.is_up(9), "check counters do not touch health flags");
}

#[test]
fn a_retired_worker_keeps_its_counts_but_not_its_gauges() {
    let region = Region::new(2).unwrap();
    let row = region.worker_row(1);
    row.add_listener(2, ListenerCounter::ConnectionsTotal, 5);
    row.add_listener(2, ListenerCounter::ConnectionsActive, 3);
    row.add_upstream(4, UpstreamCounter::Requests, 11);
    row.add_upstream(4, UpstreamCounter::Active, 2);
    region.retire(1);
    assert_eq!(
        region.listener_total(2, ListenerCounter::ConnectionsTotal),
        5
    );
    assert_eq!(
        region.listener_total(2, ListenerCounter::ConnectionsActive),
        0
    );
    assert_eq!(region.upstream_total(4, UpstreamCounter::Requests), 11);
    assert_eq!(region.upstream_total(4, UpstreamCounter::Active), 0);
    assert_eq!(
        row.listener(2, ListenerCounter::ConnectionsTotal),
        0,
        "the row starts afresh for a replacement"
    );
}

#[test]
fn routes_pairs_and_histograms_survive_a_retired_worker() {
    let region = Region::new(2).unwrap();
    let a = region.worker_row(0);
    let b = region.worker_row(1);
    a.observe_request(7, 30, 204, Duration::from_millis(3));
    b.observe_request(7, 30, 503, Duration::from_secs(40));
    b.observe_upstream(MAX_UPSTREAMS - 1, Duration::from_micros(200));
    b.count_retry(MAX_ROUTES - 1);
    b.add_upstream(MAX_UPSTREAMS - 1, UpstreamCounter::Active, 1);
    region.retire(1);
    assert_eq!(region.pair_total(30, 1), 1);
    assert_eq!(region.pair_total(30, 4), 1);
    assert_eq!(region.pair_total(30, 0), 0);
    assert_eq!(region.retries_total(MAX_ROUTES - 1), 1);
    let route = region.histogram(Histogram::Route(7));
    assert_eq!(route.count(), 2);
    assert_eq!(route.buckets[3], 1);
    assert_eq!(route.buckets[15], 1);
    assert_eq!(route.sum_micros, 40_003_000);
    let upstream = region.histogram(Histogram::Upstream(MAX_UPSTREAMS - 1));
    assert_eq!((upstream.count(), upstream.buckets[0]), (1, 1));
    assert_eq!(
        region.upstream_total(MAX_UPSTREAMS - 1, UpstreamCounter::Active),
        0
    );
    assert_eq!(status_class(101), 0);
    assert_eq!(status_class(499), 3);
    assert_eq!(status_class(600), 4);
}

#[test]
fn another_mapping_of_the_memfd_sees_the_same_counters() {
    let region = Region::new(1).unwrap();
    let fd = region.fd().try_clone_to_owned().unwrap();
    let other = Region::open(fd, 1).unwrap();
    region
        .worker_row(0)
        .add_upstream(1, UpstreamCounter::Requests, 7);
    assert_eq!(other.upstream_total(1, UpstreamCounter::Requests), 7);
    assert!(Region::open(region.fd().try_clone_to_owned().unwrap(), 3).is_err());
}

#[test]
fn a_moved_upstream_carries_its_counts_but_not_its_gauge() {
    let region = Region::new(2).unwrap();
    let (a, b) = (region.worker_row(0), region.worker_row(1));
    a.add_upstream(3, UpstreamCounter::Requests, 4);
    b.add_upstream(3, UpstreamCounter::Requests, 5);
    b.add_upstream(3, UpstreamCounter::Resets, 2);
    a.add_upstream(3, UpstreamCounter::Active, 1);
    a.observe_upstream(3, Duration::from_millis(3));
    region.count_check(3, CheckResult::Failure);
    a.add_upstream(8, UpstreamCounter::Requests, 1);
    let mut carried = Carried::default();
    region.carry_upstream(3, 8, &mut carried);
    assert_eq!(region.upstream_total(8, UpstreamCounter::Requests), 10);
    assert_eq!(region.upstream_total(8, UpstreamCounter::Resets), 2);
    assert_eq!(region.upstream_total(8, UpstreamCounter::Active), 0);
    assert_eq!(region.histogram(Histogram::Upstream(8)).count(), 1);
    assert_eq!(region.histogram(Histogram::Upstream(8)).sum_micros, 3_000);
    assert_eq!(region.checks(8, CheckResult::Failure), 1);
    assert_eq!(
        region.upstream_total(3, UpstreamCounter::Active),
        1,
        "the old slot keeps counting its open connections"
    );
    // Counted on the old slot until the workers switch: carried again,
    // only what is new.
    b.add_upstream(3, UpstreamCounter::Requests, 2);
    region.carry_upstream(3, 8, &mut carried);
    assert_eq!(region.upstream_total(8, UpstreamCounter::Requests), 12);
    assert_eq!(region.checks(8, CheckResult::Failure), 1);
}

#[test]
fn a_reset_slot_starts_at_zero_and_counts_on() {
    let region = Region::new(2).unwrap();
    let (a, b) = (region.worker_row(0), region.worker_row(1));
    a.add_upstream(5, UpstreamCounter::Requests, 7);
    b.add_upstream(5, UpstreamCounter::SentBytes, 300);
    b.add_upstream(5, UpstreamCounter::Active, 1);
    a.observe_upstream(5, Duration::from_millis(40));
    region.count_check(5, CheckResult::Success);
    region.reset_upstream(5);
    assert_eq!(region.upstream_total(5, UpstreamCounter::Requests), 0);
    assert_eq!(region.upstream_total(5, UpstreamCounter::SentBytes), 0);
    assert_eq!(region.histogram(Histogram::Upstream(5)), Default::default());
    assert_eq!(region.checks(5, CheckResult::Success), 0);
    assert_eq!(
        region.upstream_total(5, UpstreamCounter::Active),
        1,
        "a gauge is not a count"
    );
    a.add_upstream(5, UpstreamCounter::Requests, 2);
    region.retire(0);
    assert_eq!(region.upstream_total(5, UpstreamCounter::Requests), 2);
}
