// A JDBC client of `kglue serve` (run as a single-file program: java -cp postgresql.jar
// JdbcQuery.java URL USER PASSWORD SQL [BIGINT_PARAMETER]): a prepared statement, its rows
// printed as comma-separated values with their JDBC types, or the server's error on stderr
// (exit 1).
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;

public class JdbcQuery {
    public static void main(String[] args) throws Exception {
        try (Connection connection = DriverManager.getConnection(args[0], args[1], args[2]);
                PreparedStatement statement = connection.prepareStatement(args[3])) {
            if (args.length > 4) {
                statement.setLong(1, Long.parseLong(args[4]));
            }
            try (ResultSet rows = statement.executeQuery()) {
                ResultSetMetaData meta = rows.getMetaData();
                StringBuilder header = new StringBuilder();
                for (int i = 1; i <= meta.getColumnCount(); i++) {
                    header.append(i > 1 ? "," : "").append(meta.getColumnLabel(i)).append(':').append(meta.getColumnTypeName(i));
                }
                System.out.println(header);
                while (rows.next()) {
                    StringBuilder line = new StringBuilder();
                    for (int i = 1; i <= meta.getColumnCount(); i++) {
                        line.append(i > 1 ? "," : "").append(rows.getString(i));
                    }
                    System.out.println(line);
                }
            }
        } catch (SQLException e) {
            System.err.println("SQLState " + e.getSQLState() + ": " + e.getMessage());
            System.exit(1);
        }
    }
}
