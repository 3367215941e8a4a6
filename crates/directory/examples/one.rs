use slotmail_directory::plan;
fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let names: Vec<String> = (0..args[0]).map(|i| format!("m{i:02}x")).collect();
    let t = std::time::Instant::now();
    let p = plan(&names, args[1] as u32, args[2] as u32).unwrap();
    let l = p.layout();
    println!("{:?} {:?}", l.pair_sharing_range(), t.elapsed());
}
