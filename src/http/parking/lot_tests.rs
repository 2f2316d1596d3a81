use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::ParkingLot;
use crate::stop::StopSignal;

/// A connected pair: (client side, server side).
async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Counts how many of its payloads were dropped.
struct Tracked(Rc<RefCell<u32>>);

impl Drop for Tracked {
    fn drop(&mut self) {
        *self.0.borrow_mut() += 1;
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

#[tokio::test]
async fn a_readable_connection_comes_back_with_its_payload_and_bytes() {
    let listener = listener().await;
    let lot = ParkingLot::new().unwrap();
    let stop = StopSignal::default();
    let (mut quiet_client, quiet) = pair(&listener).await;
    let (mut client, server) = pair(&listener).await;
    lot.park(quiet, far(), 1);
    lot.park(server, far(), 2);
    assert_eq!(lot.len(), 2);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let resumed = RefCell::new(None);
    let run = lot.run(stop.fired(), |stream, payload| {
        *resumed.borrow_mut() = Some((stream, payload));
    });
    tokio::select! {
        () = run => panic!("the lot stopped"),
        () = async { while resumed.borrow().is_none() { tokio::task::yield_now().await } } => {}
    }
    let (mut stream, payload) = resumed.take().unwrap();
    assert_eq!(payload, 2);
    assert_eq!(lot.len(), 1);
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
    // The socket still works both ways after its stay in the lot.
    stream.write_all(b"ok").await.unwrap();
    let n = client.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"ok");
    // The other one stayed parked and open.
    quiet_client.write_all(b"x").await.unwrap();
    assert_eq!(lot.len(), 1);
}

#[tokio::test]
async fn a_client_close_wakes_its_connection() {
    let listener = listener().await;
    let lot = ParkingLot::new().unwrap();
    let stop = StopSignal::default();
    let (client, server) = pair(&listener).await;
    lot.park(server, far(), ());
    drop(client);
    let resumed = RefCell::new(None);
    let run = lot.run(stop.fired(), |stream, ()| {
        *resumed.borrow_mut() = Some(stream)
    });
    tokio::select! {
        () = run => panic!("the lot stopped"),
        () = async { while resumed.borrow().is_none() { tokio::task::yield_now().await } } => {}
    }
    let mut stream = resumed.take().unwrap();
    assert_eq!(stream.read(&mut [0u8; 8]).await.unwrap(), 0);
    assert_eq!(lot.len(), 0);
}

#[tokio::test]
async fn a_passed_deadline_closes_the_connection_and_drops_its_payload() {
    let listener = listener().await;
    let lot = ParkingLot::new().unwrap();
    let stop = StopSignal::default();
    let dropped = Rc::new(RefCell::new(0));
    let (mut late_client, late) = pair(&listener).await;
    let (mut soon_client, soon) = pair(&listener).await;
    lot.park(late, far(), Tracked(Rc::clone(&dropped)));
    // Parked second with the earlier deadline: the lot must wake for it.
    let run = lot.run(stop.fired(), |_, _| panic!("nothing was sent"));
    let check = async {
        tokio::task::yield_now().await;
        lot.park(
            soon,
            Instant::now() + Duration::from_millis(50),
            Tracked(Rc::clone(&dropped)),
        );
        let n = soon_client.read(&mut [0u8; 8]).await.unwrap();
        assert_eq!(n, 0, "closed without a byte");
    };
    tokio::select! {
        () = run => panic!("the lot stopped"),
        () = check => {}
    }
    assert_eq!(*dropped.borrow(), 1);
    assert_eq!(lot.len(), 1);
    late_client.write_all(b"x").await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_every_parked_connection_and_parks_no_more() {
    let listener = listener().await;
    let lot = ParkingLot::new().unwrap();
    let stop = StopSignal::default();
    let dropped = Rc::new(RefCell::new(0));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (client, server) = pair(&listener).await;
        lot.park(server, far(), Tracked(Rc::clone(&dropped)));
        clients.push(client);
    }
    stop.fire();
    lot.run(stop.fired(), |_, _| panic!("nothing was sent"))
        .await;
    assert_eq!(*dropped.borrow(), 3);
    for client in &mut clients {
        assert_eq!(client.read(&mut [0u8; 8]).await.unwrap(), 0);
    }
    let (mut client, server) = pair(&listener).await;
    lot.park(server, far(), Tracked(Rc::clone(&dropped)));
    assert_eq!(*dropped.borrow(), 4);
    assert_eq!(lot.len(), 0);
    assert_eq!(client.read(&mut [0u8; 8]).await.unwrap(), 0);
}

#[tokio::test]
async fn deadlines_of_connections_that_left_do_not_pile_up() {
    let listener = listener().await;
    let lot = ParkingLot::new().unwrap();
    let (client, mut server) = pair(&listener).await;
    for _ in 0..5 * super::STALE_DEADLINES_ALLOWED {
        lot.park(server, far(), ());
        let token = super::token(0, lot.generation.get());
        let parked = lot.take(token).expect("parked under key 0");
        server = TcpStream::from_std(parked.stream).unwrap();
    }
    assert!(lot.deadlines.borrow().len() <= super::STALE_DEADLINES_ALLOWED + 1);
    drop(client);
}
