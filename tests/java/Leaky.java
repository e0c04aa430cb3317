// A Java client that leaks: every request opens CONNS sockets to the
// server from fetchInventory and keeps them. Protocol of the tests'
// workloads: it warms up (the same method, its sockets closed, so the JIT
// compiles it), prints "ready PID", waits for "go", makes REQUESTS
// requests, prints "done" and waits for stdin to close.
//
// Usage: java Leaky HOST:PORT REQUESTS CONNS
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;

public class Leaky {
    static final List<Socket> KEPT = new ArrayList<>();

    /** Opens n connections to server; keeps them when keep is set (the leak). */
    static void fetchInventory(InetSocketAddress server, int n, boolean keep) throws IOException {
        for (int i = 0; i < n; i++) {
            Socket s = new Socket();
            s.connect(server);
            if (keep) {
                KEPT.add(s);
            } else {
                s.close();
            }
        }
    }

    static void handleRequest(InetSocketAddress server, int conns, boolean keep) throws IOException {
        fetchInventory(server, conns, keep);
    }

    public static void main(String[] args) throws Exception {
        String[] hp = args[0].split(":");
        InetSocketAddress server = new InetSocketAddress(hp[0], Integer.parseInt(hp[1]));
        int requests = Integer.parseInt(args[1]);
        int conns = Integer.parseInt(args[2]);
        // Warm-up: enough calls for the JIT to compile the whole path.
        for (int i = 0; i < 2000; i++) {
            handleRequest(server, 1, false);
        }
        System.out.println("ready " + ProcessHandle.current().pid());
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        while (!"go".equals(in.readLine())) {
            // Wait for the go signal.
        }
        for (int r = 0; r < requests; r++) {
            handleRequest(server, conns, true);
            Thread.sleep(20);
        }
        System.out.println("done " + KEPT.size());
        while (in.readLine() != null) {
            // Keep the sockets until stdin closes.
        }
    }
}
