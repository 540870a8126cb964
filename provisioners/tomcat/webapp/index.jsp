<%@ page contentType="text/html; charset=UTF-8" %>
<!doctype html>
<html><body><h1>Tomcat image</h1><p>Served at <%= new java.util.Date() %>.</p></body></html>
