-- A small lending-library database written for the course's text-to-SQL evaluation.
-- qcoder_lib.evaluation.sql builds library.sqlite from this file (see build_database).
CREATE TABLE authors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    born INTEGER
);
CREATE TABLE books (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    author_id INTEGER NOT NULL REFERENCES authors(id),
    year INTEGER NOT NULL,
    genre TEXT NOT NULL,
    pages INTEGER NOT NULL
);
CREATE TABLE members (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    joined INTEGER NOT NULL
);
CREATE TABLE loans (
    id INTEGER PRIMARY KEY,
    book_id INTEGER NOT NULL REFERENCES books(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    loan_day TEXT NOT NULL,
    returned INTEGER NOT NULL
);
INSERT INTO authors VALUES (1, 'Ada Rowe', 'UK', 1950);
INSERT INTO authors VALUES (2, 'Bruno Keller', 'Germany', 1962);
INSERT INTO authors VALUES (3, 'Chiara Neri', 'Italy', 1971);
INSERT INTO authors VALUES (4, 'Dmitri Orlov', 'Russia', 1948);
INSERT INTO authors VALUES (5, 'Elena Ruiz', 'Spain', 1980);
INSERT INTO authors VALUES (6, 'Fatima Haddad', 'Morocco', NULL);
INSERT INTO authors VALUES (7, 'Greta Lund', 'Germany', 1975);
INSERT INTO books VALUES (1, 'Rivers of Salt', 1, 1985, 'novel', 320);
INSERT INTO books VALUES (2, 'The Quiet Compiler', 2, 1999, 'technical', 512);
INSERT INTO books VALUES (3, 'Lanterns', 3, 2004, 'poetry', 96);
INSERT INTO books VALUES (4, 'Winter Ledger', 4, 1979, 'novel', 410);
INSERT INTO books VALUES (5, 'Tides and Tables', 2, 2011, 'technical', 288);
INSERT INTO books VALUES (6, 'Small Hours', 5, 2015, 'novel', 230);
INSERT INTO books VALUES (7, 'Desert Index', 6, 2018, 'essay', 180);
INSERT INTO books VALUES (8, 'North of Noon', 1, 1992, 'novel', 275);
INSERT INTO books VALUES (9, 'Graphs for Gardeners', 7, 2020, 'technical', 350);
INSERT INTO books VALUES (10, 'Paper Birds', 3, 2009, 'poetry', 120);
INSERT INTO books VALUES (11, 'The Long Merge', 7, 2021, 'novel', 300);
INSERT INTO books VALUES (12, 'Salt Roads', 5, 2015, 'essay', 210);
INSERT INTO members VALUES (1, 'Hana', 'Leeds', 2016);
INSERT INTO members VALUES (2, 'Ivo', 'Turin', 2018);
INSERT INTO members VALUES (3, 'Jonas', 'Leeds', 2019);
INSERT INTO members VALUES (4, 'Kemal', 'Lyon', 2019);
INSERT INTO members VALUES (5, 'Lina', 'Turin', 2021);
INSERT INTO members VALUES (6, 'Mateo', 'Porto', 2022);
INSERT INTO loans VALUES (1, 1, 1, '2023-01-04', 1);
INSERT INTO loans VALUES (2, 2, 1, '2023-01-20', 1);
INSERT INTO loans VALUES (3, 6, 2, '2023-02-02', 1);
INSERT INTO loans VALUES (4, 1, 3, '2023-02-14', 0);
INSERT INTO loans VALUES (5, 9, 4, '2023-03-01', 1);
INSERT INTO loans VALUES (6, 6, 5, '2023-03-09', 0);
INSERT INTO loans VALUES (7, 3, 2, '2023-03-15', 1);
INSERT INTO loans VALUES (8, 9, 1, '2023-04-02', 0);
INSERT INTO loans VALUES (9, 11, 4, '2023-04-18', 1);
INSERT INTO loans VALUES (10, 6, 1, '2023-05-05', 1);
INSERT INTO loans VALUES (11, 4, 6, '2023-05-21', 0);
INSERT INTO loans VALUES (12, 2, 3, '2023-06-03', 1);
