use super::*;
use crate::http::live::QueueLive;

#[test]
fn data_text_cannot_inject_markup() {
    let snapshot = LiveSnapshot {
        queues: vec![QueueLive {
            group: "<script>alert('x')</script>".into(),
            waiting: 2,
            longest_wait_s: 75,
            ..QueueLive::default()
        }],
        ..LiveSnapshot::default()
    };
    let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let data = PeriodData::compute(&[], Period::day(day), Thresholds::default()).unwrap();
    let html = render(&View::new(&snapshot, &data, Lang::En, day));
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("1:15"));
}
